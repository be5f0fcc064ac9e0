import ArgumentParser
import Foundation

/// `devbox install-service`: the systemd unit (README, "Operating devbox"; a copy is
/// scripts/devbox.service). Type=notify: `devbox serve` sends READY=1 once its listeners
/// are bound and start-up has run, STOPPING=1 when SIGTERM starts the graceful shutdown.
struct InstallServiceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "install-service",
        abstract: "Write the systemd unit /etc/systemd/system/devbox.service (or print it with --print).")

    @Flag(help: "Print the unit on stdout instead of writing it.") var print = false
    @Option(help: "The devbox binary ExecStart runs (default: this one).") var binary: String?
    @Option(help: "Data directory of the service (systemd's StateDirectory).") var dataDir = "/var/lib/devbox"
    @Option(help: "HTTP listen address HOST:PORT.") var http = "127.0.0.1:8080"
    @Option(help: "SSH gateway listen address HOST:PORT.") var ssh = "127.0.0.1:2222"
    @Option(help: "Where to write the unit.") var unitFile = "/etc/systemd/system/devbox.service"

    func run() throws {
        let bin = binary ?? Self.currentExecutable()
        guard bin.hasPrefix("/") else { fail("--binary must be an absolute path, got '\(bin)'") }
        guard dataDir.hasPrefix("/var/lib/"), !dataDir.dropFirst("/var/lib/".count).isEmpty,
            !dataDir.dropFirst("/var/lib/".count).contains("/")
        else {
            fail("--data-dir must be /var/lib/NAME (systemd's StateDirectory= makes it, mode 0700)")
        }
        for (name, v) in [("--http", http), ("--ssh", ssh)] where v.contains(where: { $0 == " " || $0 == "\n" || $0 == "\"" }) {
            fail("\(name) must be HOST:PORT, got '\(v)'")
        }
        let unit = Self.unit(binary: bin, dataDir: dataDir, http: http, ssh: ssh)
        if print {
            Swift.print(unit, terminator: "")
            return
        }
        do {
            try Data(unit.utf8).write(to: URL(fileURLWithPath: unitFile), options: .atomic)
            _ = chmod(unitFile, 0o644)
        } catch {
            fail("cannot write \(unitFile): \(error.localizedDescription)")
        }
        Swift.print("""
            wrote \(unitFile)
            next: systemctl daemon-reload && systemctl enable --now devbox
                  journalctl -u devbox -f     (the first provider token is printed there once)
            """)
    }

    static func currentExecutable() -> String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? "/usr/local/bin/devbox"
    }

    static func unit(binary: String, dataDir: String, http: String, ssh: String) -> String {
        let state = String(dataDir.dropFirst("/var/lib/".count))
        return """
            # devbox: on-demand development environments (README.md, "Operating devbox").
            # Written by `devbox install-service`; scripts/devbox.service is a copy.
            [Unit]
            Description=devbox development environments (REST API, MCP, dashboard, SSH gateway)
            After=network-online.target
            Wants=network-online.target

            [Service]
            # READY=1 once the HTTP and SSH listeners are bound and start-up has run (boxes
            # recovered, warm pool started); STOPPING=1 when SIGTERM begins the graceful
            # shutdown (HTTP drained, workers stop at a step boundary, at most ~10 s).
            Type=notify
            NotifyAccess=main
            ExecStart=\(binary) serve --data-dir \(dataDir) --http \(http) --ssh \(ssh)
            # Settings (DEVBOX_*, see README "Configuration"), e.g. DEVBOX_PUBLIC_URL, DEVBOX_AUDIT_LOG=stderr.
            EnvironmentFile=-/etc/default/devbox
            Environment=DEVBOX_LOG_FORMAT=json
            SyslogIdentifier=devbox
            StateDirectory=\(state)
            StateDirectoryMode=0700
            UMask=0077
            Restart=on-failure
            RestartSec=2s
            # Start-up prepares the host (mask layer, box networks) and may build nothing else.
            TimeoutStartSec=120s
            TimeoutStopSec=30s
            # Only the serve gets SIGTERM: the boxes (crun containers in their own cgroups) keep
            # running across a restart and the next serve adopts them, as after a crash.
            KillMode=process
            # devbox manages cgroups for its boxes (one per box, with limits).
            Delegate=yes
            TasksMax=infinity
            LimitNOFILE=1048576
            # Not set, on purpose (they cannot work for a service that makes containers):
            # - ProtectSystem, ProtectHome, PrivateTmp, PrivateDevices, ProtectKernelModules,
            #   ProtectKernelTunables, ProtectControlGroups, ProtectProc, ReadOnlyPaths: each gives
            #   the service a private mount namespace, but the boxes' mounts (overlay, bind mounts,
            #   /run/netns) must be made in the host's, where the next serve and crun find them.
            # - NoNewPrivileges, RestrictSUIDSGID, SystemCallFilter, SystemCallArchitectures,
            #   LockPersonality, MemoryDenyWriteExecute, RestrictNamespaces, ProtectClock,
            #   ProtectHostname: seccomp filters and no_new_privs are inherited by every process
            #   the service starts, the boxes included (sudo, setuid tools, JITs, 32-bit binaries,
            #   nested namespaces in a box would break), and crun itself needs namespaces.
            # - User=/DynamicUser=, CapabilityBoundingSet=, PrivateNetwork=, PrivateUsers=: the
            #   service needs root and CAP_SYS_ADMIN/CAP_NET_ADMIN (mounts, cgroups, netns,
            #   nftables), in the host's network and user namespaces.
            # Boxes are isolated by devbox itself (docs/SECURITY.md).

            [Install]
            WantedBy=multi-user.target

            """
    }
}
