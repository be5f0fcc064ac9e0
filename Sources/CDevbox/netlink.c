// See the "Netlink" section of CDevbox.h. Linux only: rtnetlink requests that wire one
// box's network namespace to the host (veth pair, addresses, routes), made without
// iproute2 so that attaching a box costs a few system calls, not a few processes.
//
// Conventions (unlike the rest of CDevbox): every function returns 0 (or a descriptor,
// index or count) on success and -errno on failure, and leaves errno alone as far as
// the caller is concerned. IPv4 addresses are uint32_t in host byte order.
#define _GNU_SOURCE
#include "CDevbox.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <arpa/inet.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

// Requests are small and built on the stack: a header, a fixed struct and a handful of
// attributes (the veth request, the largest, is under 200 bytes).
#define DBX_NL_REQ_SIZE 512
// Receive buffer. The kernel sizes dump messages from the buffer the first recvmsg
// offers (capped at 32 KiB), and a message larger than the buffer would be truncated,
// so the buffer is the cap itself. On the stack: no allocation, nothing to leak.
#define DBX_NL_RECV_SIZE 32768
// A dump the kernel flags as inconsistent (NLM_F_DUMP_INTR: the table changed while it
// was being walked) is restarted this many times before giving up with -EAGAIN.
#define DBX_NL_DUMP_TRIES 5

struct dbx_nl_req {
    struct nlmsghdr *h;
    size_t cap;
};

// Sequence numbers only need to be unique per socket among requests in flight; one
// process-wide counter is simplest and safe to use from any thread.
static uint32_t dbx_nl_next_seq(void) {
    static uint32_t seq;
    uint32_t s = __atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED);
    if (s == 0) s = __atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED);
    return s;
}

static void dbx_nl_init(struct dbx_nl_req *r, void *buf, size_t cap, uint16_t type, uint16_t flags) {
    memset(buf, 0, cap);
    r->h = buf;
    r->cap = cap;
    r->h->nlmsg_len = NLMSG_LENGTH(0);
    r->h->nlmsg_type = type;
    r->h->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    r->h->nlmsg_seq = dbx_nl_next_seq();
}

// Appends `len` bytes of fixed header (ifinfomsg, ifaddrmsg, rtmsg) or raw payload.
static void *dbx_nl_put(struct dbx_nl_req *r, size_t len) {
    size_t at = NLMSG_ALIGN(r->h->nlmsg_len);
    if (at + NLMSG_ALIGN(len) > r->cap) return NULL;
    r->h->nlmsg_len = (uint32_t)(at + len);
    return (char *)r->h + at;
}

static struct rtattr *dbx_nl_attr(struct dbx_nl_req *r, uint16_t type, const void *data, size_t len) {
    size_t at = NLMSG_ALIGN(r->h->nlmsg_len);
    if (at + RTA_SPACE(len) > r->cap) return NULL;
    struct rtattr *a = (struct rtattr *)((char *)r->h + at);
    a->rta_type = type;
    a->rta_len = (unsigned short)RTA_LENGTH(len);
    if (len) memcpy(RTA_DATA(a), data, len);
    r->h->nlmsg_len = (uint32_t)(at + RTA_SPACE(len));
    return a;
}

static int dbx_nl_attr_u32(struct dbx_nl_req *r, uint16_t type, uint32_t v) {
    return dbx_nl_attr(r, type, &v, sizeof v) ? 0 : -EMSGSIZE;
}

// Network byte order, as rtnetlink carries IPv4 addresses.
static int dbx_nl_attr_in4(struct dbx_nl_req *r, uint16_t type, uint32_t host_order) {
    uint32_t v = htonl(host_order);
    return dbx_nl_attr(r, type, &v, sizeof v) ? 0 : -EMSGSIZE;
}

static int dbx_nl_attr_str(struct dbx_nl_req *r, uint16_t type, const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n >= IFNAMSIZ) return -EINVAL;
    return dbx_nl_attr(r, type, s, n + 1) ? 0 : -EMSGSIZE;
}

static struct rtattr *dbx_nl_nest_begin(struct dbx_nl_req *r, uint16_t type) {
    return dbx_nl_attr(r, type, NULL, 0);
}

static void dbx_nl_nest_end(struct dbx_nl_req *r, struct rtattr *nest) {
    nest->rta_len = (unsigned short)((char *)r->h + r->h->nlmsg_len - (char *)nest);
}

// Called for every data message answering the request (same sequence number) until the
// final ack, error or NLMSG_DONE. A non-zero return stops the exchange with that value
// once the rest of the answer has been drained (the socket stays usable).
typedef int (*dbx_nl_cb)(const struct nlmsghdr *h, void *ctx);

static int dbx_nl_send(int fd, const struct nlmsghdr *h) {
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    for (;;) {
        ssize_t n = sendto(fd, h, h->nlmsg_len, 0, (struct sockaddr *)&kernel, sizeof kernel);
        if (n >= 0) return n == (ssize_t)h->nlmsg_len ? 0 : -EMSGSIZE;
        if (errno != EINTR) return -errno;
    }
}

// Sends the request and reads until its end: the ack (NLMSG_ERROR, error 0) of a plain
// request, the NLMSG_ERROR of a failed one, or NLMSG_DONE after a dump. Messages with
// another sequence number (leftovers of an earlier exchange) or from anyone but the
// kernel are skipped. Returns 0, -errno from the kernel or the socket, the callback's
// non-zero value, or -EAGAIN for an interrupted (inconsistent) dump.
static int dbx_nl_exchange(int fd, struct nlmsghdr *req, dbx_nl_cb cb, void *ctx) {
    int rc = dbx_nl_send(fd, req);
    if (rc) return rc;
    int result = 0, interrupted = 0;
    _Alignas(struct nlmsghdr) char buf[DBX_NL_RECV_SIZE];
    for (;;) {
        struct sockaddr_nl from;
        struct iovec iov = {.iov_base = buf, .iov_len = sizeof buf};
        struct msghdr m = {.msg_name = &from, .msg_namelen = sizeof from, .msg_iov = &iov, .msg_iovlen = 1};
        ssize_t n = recvmsg(fd, &m, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            // ENOBUFS: the socket's receive queue overflowed and part of the answer is
            // lost; the exchange cannot be completed reliably.
            return -errno;
        }
        if (n == 0) return -EPIPE;
        if (m.msg_flags & MSG_TRUNC) return -EMSGSIZE;
        if (m.msg_namelen < sizeof from || from.nl_pid != 0) continue;
        int len = (int)n;
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
            if (h->nlmsg_seq != req->nlmsg_seq) continue;
            if (h->nlmsg_flags & NLM_F_DUMP_INTR) interrupted = 1;
            if (h->nlmsg_type == NLMSG_ERROR) {
                if (h->nlmsg_len < NLMSG_LENGTH(sizeof(struct nlmsgerr))) return -EBADMSG;
                const struct nlmsgerr *e = NLMSG_DATA(h);
                // error 0 is the ack; a negative errno is the request's failure.
                if (e->error) return e->error;
                return result;
            }
            if (h->nlmsg_type == NLMSG_DONE) {
                // NLMSG_DONE carries the dump's own status (negative errno on failure).
                if (h->nlmsg_len >= NLMSG_LENGTH(sizeof(int))) {
                    int st;
                    memcpy(&st, NLMSG_DATA(h), sizeof st);
                    if (st < 0) return st;
                }
                if (result) return result;
                return interrupted ? -EAGAIN : 0;
            }
            if (h->nlmsg_type == NLMSG_NOOP || h->nlmsg_type == NLMSG_OVERRUN) continue;
            if (cb && result == 0) result = cb(h, ctx);
        }
        // Not finished: a plain request ends with its ack, a dump (which the kernel does
        // not ack) with NLMSG_DONE, possibly several datagrams later.
    }
}

int dbx_nl_open(void) {
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0) return -errno;
    // Errors come back without a copy of the request (smaller, never truncated).
    int one = 1;
    (void)setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);
    return fd;
}

int dbx_socket_in_netns(int nsfd, int domain, int type, int protocol) {
    int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (self < 0) return -errno;
    if (setns(nsfd, CLONE_NEWNET) != 0) {
        int e = errno;
        close(self);
        return -e;
    }
    int fd = socket(domain, type | SOCK_CLOEXEC, protocol);
    int e = fd < 0 ? errno : 0;
    if (fd >= 0 && domain == AF_NETLINK && protocol == NETLINK_ROUTE) {
        int one = 1;
        (void)setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);
    }
    // This thread is now in the box's network namespace. Anything it did next (a
    // connect, a bind, another netlink request) would act on the box's network instead
    // of the host's: if it cannot return, the process must not run on.
    if (setns(self, CLONE_NEWNET) != 0) abort();
    close(self);
    return fd < 0 ? -e : fd;
}

int dbx_nl_veth_create(int fd, const char *host_name, const char *peer_name, int peer_nsfd) {
    char buf[DBX_NL_REQ_SIZE];
    struct dbx_nl_req r;
    dbx_nl_init(&r, buf, sizeof buf, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
    struct ifinfomsg *ifi = dbx_nl_put(&r, sizeof *ifi);
    if (!ifi) return -EMSGSIZE;
    ifi->ifi_family = AF_UNSPEC;
    int rc = dbx_nl_attr_str(&r, IFLA_IFNAME, host_name);
    if (rc) return rc;
    struct rtattr *linkinfo = dbx_nl_nest_begin(&r, IFLA_LINKINFO);
    if (!linkinfo || !dbx_nl_attr(&r, IFLA_INFO_KIND, "veth", 5)) return -EMSGSIZE;
    struct rtattr *data = dbx_nl_nest_begin(&r, IFLA_INFO_DATA);
    struct rtattr *peer = data ? dbx_nl_nest_begin(&r, VETH_INFO_PEER) : NULL;
    if (!peer) return -EMSGSIZE;
    // VETH_INFO_PEER holds an ifinfomsg followed by the peer's own link attributes.
    struct ifinfomsg *pifi = dbx_nl_put(&r, sizeof *pifi);
    if (!pifi) return -EMSGSIZE;
    pifi->ifi_family = AF_UNSPEC;
    rc = dbx_nl_attr_str(&r, IFLA_IFNAME, peer_name);
    if (rc) return rc;
    // The peer is created in the box's namespace directly: its name (eth0) may well
    // exist on the host, and it is never visible there, not even briefly.
    if (peer_nsfd >= 0 && (rc = dbx_nl_attr_u32(&r, IFLA_NET_NS_FD, (uint32_t)peer_nsfd))) return rc;
    dbx_nl_nest_end(&r, peer);
    dbx_nl_nest_end(&r, data);
    dbx_nl_nest_end(&r, linkinfo);
    return dbx_nl_exchange(fd, r.h, NULL, NULL);
}

static int dbx_nl_link_index_cb(const struct nlmsghdr *h, void *ctx) {
    if (h->nlmsg_type != RTM_NEWLINK || h->nlmsg_len < NLMSG_LENGTH(sizeof(struct ifinfomsg))) return 0;
    const struct ifinfomsg *ifi = NLMSG_DATA(h);
    *(int *)ctx = ifi->ifi_index;
    return 0;
}

int dbx_nl_link_index(int fd, const char *name) {
    char buf[DBX_NL_REQ_SIZE];
    struct dbx_nl_req r;
    dbx_nl_init(&r, buf, sizeof buf, RTM_GETLINK, 0);
    struct ifinfomsg *ifi = dbx_nl_put(&r, sizeof *ifi);
    if (!ifi) return -EMSGSIZE;
    ifi->ifi_family = AF_UNSPEC;
    int rc = dbx_nl_attr_str(&r, IFLA_IFNAME, name);
    if (rc) return rc;
    // Only the basic attributes: no per-VF info, no statistics beyond the defaults.
    if ((rc = dbx_nl_attr_u32(&r, IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS))) return rc;
    int index = 0;
    rc = dbx_nl_exchange(fd, r.h, dbx_nl_link_index_cb, &index);
    if (rc) return rc;
    return index > 0 ? index : -ENODEV;
}

int dbx_nl_link_set_up(int fd, int ifindex) {
    char buf[DBX_NL_REQ_SIZE];
    struct dbx_nl_req r;
    dbx_nl_init(&r, buf, sizeof buf, RTM_NEWLINK, 0);
    struct ifinfomsg *ifi = dbx_nl_put(&r, sizeof *ifi);
    if (!ifi) return -EMSGSIZE;
    ifi->ifi_family = AF_UNSPEC;
    ifi->ifi_index = ifindex;
    ifi->ifi_flags = IFF_UP;
    ifi->ifi_change = IFF_UP;
    return dbx_nl_exchange(fd, r.h, NULL, NULL);
}

int dbx_nl_link_delete(int fd, const char *name) {
    char buf[DBX_NL_REQ_SIZE];
    struct dbx_nl_req r;
    dbx_nl_init(&r, buf, sizeof buf, RTM_DELLINK, 0);
    struct ifinfomsg *ifi = dbx_nl_put(&r, sizeof *ifi);
    if (!ifi) return -EMSGSIZE;
    ifi->ifi_family = AF_UNSPEC;
    int rc = dbx_nl_attr_str(&r, IFLA_IFNAME, name);
    if (rc) return rc;
    return dbx_nl_exchange(fd, r.h, NULL, NULL);
}

struct dbx_nl_names_ctx {
    const char *prefix;
    size_t prefix_len;
    char *names;
    int max;
    int count;
};

static int dbx_nl_names_cb(const struct nlmsghdr *h, void *ctx) {
    struct dbx_nl_names_ctx *c = ctx;
    if (h->nlmsg_type != RTM_NEWLINK || h->nlmsg_len < NLMSG_LENGTH(sizeof(struct ifinfomsg))) return 0;
    const struct ifinfomsg *ifi = NLMSG_DATA(h);
    int len = (int)h->nlmsg_len - (int)NLMSG_LENGTH(sizeof *ifi);
    for (const struct rtattr *a = IFLA_RTA(ifi); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
        if (a->rta_type != IFLA_IFNAME) continue;
        const char *name = RTA_DATA(a);
        size_t n = strnlen(name, RTA_PAYLOAD(a));
        if (n == 0 || n >= DBX_IFNAMSIZ) break;
        if (n < c->prefix_len || memcmp(name, c->prefix, c->prefix_len) != 0) break;
        if (c->count < c->max) {
            char *slot = c->names + (size_t)c->count * DBX_IFNAMSIZ;
            memcpy(slot, name, n);
            slot[n] = 0;
        }
        c->count++;
        break;
    }
    return 0;
}

int dbx_nl_link_names(int fd, const char *prefix, char *names, int max) {
    if (max < 0 || (max > 0 && !names)) return -EINVAL;
    for (int tries = 0; tries < DBX_NL_DUMP_TRIES; tries++) {
        char buf[DBX_NL_REQ_SIZE];
        struct dbx_nl_req r;
        dbx_nl_init(&r, buf, sizeof buf, RTM_GETLINK, NLM_F_DUMP);
        struct ifinfomsg *ifi = dbx_nl_put(&r, sizeof *ifi);
        if (!ifi) return -EMSGSIZE;
        ifi->ifi_family = AF_UNSPEC;
        int rc = dbx_nl_attr_u32(&r, IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
        if (rc) return rc;
        struct dbx_nl_names_ctx c = {.prefix = prefix ? prefix : "", .names = names, .max = max};
        c.prefix_len = strlen(c.prefix);
        rc = dbx_nl_exchange(fd, r.h, dbx_nl_names_cb, &c);
        if (rc == -EAGAIN) continue;
        return rc ? rc : c.count;
    }
    return -EAGAIN;
}

int dbx_nl_addr_add4(int fd, int ifindex, uint32_t address, uint8_t prefix_len) {
    if (prefix_len > 32) return -EINVAL;
    char buf[DBX_NL_REQ_SIZE];
    struct dbx_nl_req r;
    dbx_nl_init(&r, buf, sizeof buf, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
    struct ifaddrmsg *ifa = dbx_nl_put(&r, sizeof *ifa);
    if (!ifa) return -EMSGSIZE;
    ifa->ifa_family = AF_INET;
    ifa->ifa_prefixlen = prefix_len;
    ifa->ifa_scope = RT_SCOPE_UNIVERSE;
    ifa->ifa_index = (uint32_t)ifindex;
    // IFA_LOCAL is the interface's own address; IFA_ADDRESS the same on a non
    // point-to-point link (what `ip addr add A/N dev D` sends).
    int rc = dbx_nl_attr_in4(&r, IFA_LOCAL, address);
    if (!rc) rc = dbx_nl_attr_in4(&r, IFA_ADDRESS, address);
    if (rc) return rc;
    return dbx_nl_exchange(fd, r.h, NULL, NULL);
}

static int dbx_nl_route_req(struct dbx_nl_req *r, void *buf, size_t cap, uint16_t type, uint16_t flags,
                            uint32_t dst, uint8_t dst_len, uint8_t rtype, uint8_t protocol, uint8_t scope) {
    if (dst_len > 32) return -EINVAL;
    dbx_nl_init(r, buf, cap, type, flags);
    struct rtmsg *rtm = dbx_nl_put(r, sizeof *rtm);
    if (!rtm) return -EMSGSIZE;
    rtm->rtm_family = AF_INET;
    rtm->rtm_dst_len = dst_len;
    rtm->rtm_table = RT_TABLE_MAIN;
    rtm->rtm_protocol = protocol;
    rtm->rtm_scope = scope;
    rtm->rtm_type = rtype;
    // A default route (length 0) has no RTA_DST at all.
    if (dst_len > 0) return dbx_nl_attr_in4(r, RTA_DST, dst);
    return 0;
}

int dbx_nl_route_add4(int fd, uint32_t dst, uint8_t dst_len, uint32_t gateway, int oif,
                      uint8_t type, uint8_t protocol, int replace) {
    if (type != RTN_UNICAST && type != RTN_UNREACHABLE) return -EINVAL;
    if (type == RTN_UNREACHABLE && (gateway || oif > 0)) return -EINVAL;
    // Scope as `ip route add` picks it: a unicast route without a gateway reaches its
    // destination on the link itself; everything else is global.
    uint8_t scope = (type == RTN_UNICAST && !gateway) ? RT_SCOPE_LINK : RT_SCOPE_UNIVERSE;
    char buf[DBX_NL_REQ_SIZE];
    struct dbx_nl_req r;
    int rc = dbx_nl_route_req(&r, buf, sizeof buf, RTM_NEWROUTE, NLM_F_CREATE | (replace ? NLM_F_REPLACE : NLM_F_EXCL),
                              dst, dst_len, type, protocol, scope);
    if (rc) return rc;
    if (gateway && (rc = dbx_nl_attr_in4(&r, RTA_GATEWAY, gateway))) return rc;
    if (oif > 0 && (rc = dbx_nl_attr_u32(&r, RTA_OIF, (uint32_t)oif))) return rc;
    return dbx_nl_exchange(fd, r.h, NULL, NULL);
}

int dbx_nl_route_del4(int fd, uint32_t dst, uint8_t dst_len, uint8_t type, uint8_t protocol) {
    char buf[DBX_NL_REQ_SIZE];
    struct dbx_nl_req r;
    // RT_SCOPE_NOWHERE: any scope. The kernel deletes only a route whose type and
    // protocol match these (when non-zero), so another owner's route of the same
    // prefix is left alone (-ESRCH).
    int rc = dbx_nl_route_req(&r, buf, sizeof buf, RTM_DELROUTE, 0, dst, dst_len, type, protocol,
                              RT_SCOPE_NOWHERE);
    if (rc) return rc;
    return dbx_nl_exchange(fd, r.h, NULL, NULL);
}

struct dbx_nl_routes_ctx {
    struct dbx_route4 *out;
    int max;
    int count;
};

static int dbx_nl_routes_cb(const struct nlmsghdr *h, void *ctx) {
    struct dbx_nl_routes_ctx *c = ctx;
    if (h->nlmsg_type != RTM_NEWROUTE || h->nlmsg_len < NLMSG_LENGTH(sizeof(struct rtmsg))) return 0;
    const struct rtmsg *rtm = NLMSG_DATA(h);
    if (rtm->rtm_family != AF_INET) return 0;
    struct dbx_route4 rt = {
        .dst_len = rtm->rtm_dst_len, .type = rtm->rtm_type,
        .protocol = rtm->rtm_protocol, .scope = rtm->rtm_scope,
    };
    uint32_t table = rtm->rtm_table;
    int len = (int)h->nlmsg_len - (int)NLMSG_LENGTH(sizeof *rtm);
    for (const struct rtattr *a = RTM_RTA(rtm); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
        uint32_t v;
        if (RTA_PAYLOAD(a) < sizeof v) continue;
        memcpy(&v, RTA_DATA(a), sizeof v);
        switch (a->rta_type) {
        case RTA_DST: rt.dst = ntohl(v); break;
        case RTA_GATEWAY: rt.gateway = ntohl(v); break;
        case RTA_OIF: rt.oif = (int32_t)v; break;
        case RTA_TABLE: table = v; break;  // the full id (rtm_table is 8 bits)
        default: break;
        }
    }
    if (table != RT_TABLE_MAIN) return 0;
    if (c->count < c->max) c->out[c->count] = rt;
    c->count++;
    return 0;
}

int dbx_nl_route_dump4(int fd, struct dbx_route4 *out, int max) {
    if (max < 0 || (max > 0 && !out)) return -EINVAL;
    for (int tries = 0; tries < DBX_NL_DUMP_TRIES; tries++) {
        char buf[DBX_NL_REQ_SIZE];
        struct dbx_nl_req r;
        dbx_nl_init(&r, buf, sizeof buf, RTM_GETROUTE, NLM_F_DUMP);
        struct rtmsg *rtm = dbx_nl_put(&r, sizeof *rtm);
        if (!rtm) return -EMSGSIZE;
        rtm->rtm_family = AF_INET;
        struct dbx_nl_routes_ctx c = {.out = out, .max = max};
        int rc = dbx_nl_exchange(fd, r.h, dbx_nl_routes_cb, &c);
        if (rc == -EAGAIN) continue;
        return rc ? rc : c.count;
    }
    return -EAGAIN;
}
