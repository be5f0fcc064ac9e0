import CDevbox
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

// Where a box's env file (EnvFile.swift: AI tokens in credential_mode env, the create's env
// values) lives on the host: never on the host's disk. `<state>/.secrets` is a tmpfs of the
// runtime's own (mode 0711: crun, joined to a box's user namespace, must reach the box's
// directory in it, but nobody can list it; nosuid/nodev/noexec; `noswap` where the kernel
// has it, so its pages are not written to a swap device either) with one directory per box,
// `<state>/.secrets/<container name>/` (0700, owned by the box's root as the host sees it),
// holding `env` (0600, same owner). The box sees that
// directory read-only at /etc/devbox (a bind mount in its config.json): it reads its env
// there, cannot change it, and cannot point the host's writes anywhere else. The host reads
// it straight from the tmpfs on every exec (`processEnvironment`), never through the box.
//
// Lifetime: the directory is made with the box and removed with it (destroy, sweep). The
// tmpfs stays mounted while any box has a directory on it, so a `serve` restart keeps every
// env file (env-mode AI tokens included); it is unmounted when the last box is gone (at
// shutdown, or the sweep). A host reboot empties it: `start` then finds no env file
// (`hasEnvFile` is false) and the service writes a new one from what its database still holds
// (CredentialBroker.restoreEnvIfLost): the user's env values and the proxy settings, not env-mode AI
// tokens, which exist nowhere else by design (issue 3: minimal retention).
extension CrunRuntime {
    var envRoot: String { configuration.stateDirectory + "/.secrets" }
    func envDirectory(_ id: String) -> String { envRoot + "/" + containerName(id) }

    /// Serializes mounting, unmounting and making directories on the secrets tmpfs.
    static let envMountLock = Mutex<Void>(())

    /// The owner of the box's env directory and file: the box's root as the host sees it.
    /// The one place that decides it (a box in a user namespace of its own maps its root to
    /// another host uid; the file must stay readable by that root and nobody else).
    func envFileOwner(_ id: String) -> (uid: uid_t, gid: gid_t) {
        guard let m = idMap(id) else { return (0, 0) }
        return (m.rootUID, m.rootGID)
    }

    /// Mounts the tmpfs if it is not (lock held).
    private func mountEnvRootLocked() throws {
        if HostState.isMountPoint(envRoot) { return }
        // 0711: crun, joined to a box's user namespace, must traverse it to the box's own
        // directory (0700, owned by that box's root); nobody can list it.
        try makeDirectories(envRoot, mode: 0o711)
        _ = chmod(envRoot, 0o711)
        let flags = UInt(MS_NOSUID | MS_NODEV | MS_NOEXEC)
        let base = "mode=0711,size=64m,nr_inodes=65536"
        // `noswap` (Linux 6.4+): the pages never reach a swap device.
        if dbx_mount("devbox-secrets", envRoot, "tmpfs", flags, base + ",noswap") != 0 {
            if dbx_mount("devbox-secrets", envRoot, "tmpfs", flags, base) != 0 { throw sysError("mount secrets tmpfs") }
            logger.notice("secrets tmpfs mounted without noswap (kernel older than 6.4): env files may reach a swap device")
        }
    }

    /// Makes (if needed) the box's directory on the secrets tmpfs, mounting it first: the
    /// source of the box's /etc/devbox bind mount. Returns its path.
    @discardableResult
    func prepareEnvDirectory(_ id: String) throws -> String {
        let dir = envDirectory(id)
        let owner = envFileOwner(id)
        try Self.envMountLock.withLock { _ in
            try mountEnvRootLocked()
            if mkdir(dir, 0o700) != 0 && lastErrno() != EEXIST { throw sysError("mkdir env directory") }
        }
        var st = stat()
        guard lstat(dir, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else { throw sysError("env directory", ENOTDIR) }
        if st.st_uid != owner.uid || st.st_gid != owner.gid { _ = lchown(dir, owner.uid, owner.gid) }
        return dir
    }

    /// Atomically replaces the box's env file (on the tmpfs; no fsync needed or possible).
    func writeEnvFile(_ id: String, env: [String: String]) throws {
        let dir = try prepareEnvDirectory(id)
        let dirFD = try SafeFS.openDirectory(dir)
        defer { closeFD(dirFD) }
        try EnvFile.write(directoryFD: dirFD, env: env, owner: envFileOwner(id))
    }

    /// The box's env (empty when it has none).
    func readEnvFile(_ id: String) -> [String: String] {
        let fd = open(envDirectory(id), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        if fd < 0 { return [:] }
        defer { closeFD(fd) }
        return EnvFile.read(directoryFD: fd)
    }

    /// True when the box has an env file (false after a reboot emptied the tmpfs).
    public func hasEnvFile(id: String) -> Bool {
        guard (try? validate(id)) != nil else { return false }
        return lstatExists(envDirectory(id) + "/" + EnvFile.name)
    }

    /// Removes the box's env directory (destroy). Every byte goes with the tmpfs pages.
    func removeEnvDirectory(_ id: String) {
        let dir = envDirectory(id)
        if access(dir, F_OK) != 0 { return }
        do { try HostState.removeTree(dir) } catch {
            logger.warning("removing an env directory failed", metadata: ["box": .string(id), "error": .string("\(error)")])
        }
    }

    /// Removes env directories whose box is gone (a crash between the two removals), then
    /// unmounts the tmpfs if no box has one left. At shutdown and in the sweep.
    func releaseEnvIfUnused() {
        Self.envMountLock.withLock { _ in
            guard HostState.isMountPoint(envRoot) else {
                _ = rmdir(envRoot)
                return
            }
            var left = 0
            for name in MaskPlan.listDirectory(envRoot) {
                if lstatExists(configuration.stateDirectory + "/" + name) {
                    left += 1
                } else {
                    try? HostState.removeTree(envRoot + "/" + name)
                }
            }
            if left > 0 { return }
            for _ in 0..<16 where HostState.isMountPoint(envRoot) {
                if dbx_umount(envRoot, 0) != 0 { _ = dbx_umount(envRoot, Int32(MNT_DETACH)) }
            }
            _ = rmdir(envRoot)
        }
    }
}
