// null_http: the floor for bench/list_bench.py --reads-at (issue 21). An HTTP/1.1 keep-alive
// server that answers every request with the same 200 and a body of BODY bytes, from THREADS
// epoll threads (SO_REUSEPORT), doing nothing else: what any server could reach on this
// machine while the devbox serve does the create/delete churn beside it.
//
//     cc -O2 -pthread -o /tmp/null_http bench/null_http.c && /tmp/null_http PORT [THREADS] [BODY]
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static int port;
static char *response;
static size_t response_len;

struct conn { int fd; int matched; };  // matched: bytes of "\r\n\r\n" seen so far

static void *serve(void *arg) {
    (void)arg;
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(ls, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(0x7f000001)};
    if (bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 1024)) { perror("bind/listen"); exit(1); }
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    struct epoll_event evs[256];
    char buf[16384];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            if (!evs[i].data.ptr) {
                int fd;
                while ((fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct conn *c = calloc(1, sizeof *c);
                    c->fd = fd;
                    struct epoll_event ce = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ce);
                }
                continue;
            }
            struct conn *c = evs[i].data.ptr;
            ssize_t r = read(c->fd, buf, sizeof buf);
            if (r <= 0) {
                if (r < 0 && errno == EAGAIN) continue;
                close(c->fd);
                free(c);
                continue;
            }
            int answers = 0;
            static const char end[] = "\r\n\r\n";
            for (ssize_t k = 0; k < r; k++) {
                if (buf[k] == end[c->matched]) {
                    if (++c->matched == 4) { answers++; c->matched = 0; }
                } else {
                    c->matched = buf[k] == '\r' ? 1 : 0;
                }
            }
            for (int k = 0; k < answers; k++) {
                if (write(c->fd, response, response_len) < 0) break;
            }
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: null_http PORT [THREADS] [BODY]\n"); return 2; }
    port = atoi(argv[1]);
    int threads = argc > 2 ? atoi(argv[2]) : 2;
    size_t body = argc > 3 ? (size_t)atol(argv[3]) : 1000;
    response = malloc(body + 256);
    int h = sprintf(response, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n", body);
    memset(response + h, 'x', body);
    response_len = h + body;
    pthread_t t[64];
    for (int i = 0; i < threads && i < 64; i++) pthread_create(&t[i], NULL, serve, NULL);
    pthread_join(t[0], NULL);
    return 0;
}
