import Foundation
import GRDB
import Synchronization

/// Owns the SQLite pool and its migrations. Every SQL statement of the service lives in
/// this folder; the rest of the service calls the methods that keep the invariants.
public final class AppDatabase: Sendable {
    /// The serve's `DatabasePool` (WAL) on disk, or any other writer handed to
    /// `init(writer:)` (tests: an in-memory `DatabaseQueue()`).
    let pool: any DatabaseWriter
    let createBatcher: CreateBatcher
    /// Wakes waiters when a devbox, one of its operations or repositories changes
    /// (published by `DevboxChangeObserver` after each commit, whichever method wrote).
    public let changes = DevboxChanges()
    /// Devboxes as read for the API, dropped on every commit that changes them (nil unless
    /// this process makes every write to the devbox tables: see `init`).
    let readCache: DevboxReadCache?
    /// The database file; empty for a writer handed to `init(writer:)` (no file of its own
    /// to probe, size or back up).
    let path: String
    /// A connection of its own for `dataVersion()`, opened on first use (only the serve asks).
    private let versionProbe = Mutex<DatabaseQueue?>(nil)

    /// Opens (creating if needed) the database at `path` and migrates it.
    ///
    /// `cachesDevboxes`: keep devboxes read by id in memory (`DevboxReadCache`). Only for the
    /// process that makes every write to the devbox tables, the serve (which holds the data
    /// directory's serve lock): this connection's observer is what drops stale entries, and it
    /// never sees another process's commits.
    public init(path: String, cachesDevboxes: Bool = false) throws {
        readCache = cachesDevboxes ? DevboxReadCache() : nil
        self.path = path
        var config = Configuration()
        config.busyMode = .timeout(10)
        config.prepareDatabase { db in
            // Deleted rows (AI tokens after ready) are overwritten with zeros, not left in free pages.
            try db.execute(sql: "PRAGMA secure_delete = ON")
            try db.execute(sql: "PRAGMA foreign_keys = ON")
        }
        try Self.restrictFiles(path)
        pool = try DatabasePool(path: path, configuration: config)
        // GRDB leaves a WAL pool's writer at synchronous = NORMAL: a commit survives a crash of
        // the service but not of the machine. Every write the API acknowledges must survive
        // both, so the writer waits for the disk (FULL); pipeline progress opts out per
        // transaction (`progressWrite`).
        try pool.writeWithoutTransaction { try $0.execute(sql: "PRAGMA synchronous = FULL") }
        try Self.migrator.migrate(pool)
        createBatcher = CreateBatcher(pool: pool)
        pool.add(
            transactionObserver: DevboxChangeObserver(changes: changes, readCache: readCache), extent: .databaseLifetime)
        if let readCache { try pool.read { readCache.live.reload($0) } }
    }

    /// Migrates and serves the database of `writer`, e.g. an in-memory `DatabaseQueue()` for
    /// tests that need no file (the fast tier). The writer is used as given: its
    /// synchronous mode, busy timeout and the pragmas `init(path:)` sets (foreign keys,
    /// secure_delete) are the caller's; `dataVersion`/`authVersion` answer nil (the token
    /// cache then reloads on every lookup), the database has no size on disk.
    public init(writer: any DatabaseWriter, cachesDevboxes: Bool = false) throws {
        readCache = cachesDevboxes ? DevboxReadCache() : nil
        path = ""
        pool = writer
        try Self.migrator.migrate(writer)
        createBatcher = CreateBatcher(pool: writer)
        writer.add(
            transactionObserver: DevboxChangeObserver(changes: changes, readCache: readCache), extent: .databaseLifetime)
        if let readCache { try writer.read { readCache.live.reload($0) } }
    }

    /// An in-memory database with the pragmas of `init(path:)` (foreign keys, secure_delete):
    /// what the fast tier's tests use.
    public static func inMemory(cachesDevboxes: Bool = false) throws -> AppDatabase {
        var config = Configuration()
        config.prepareDatabase { db in
            try db.execute(sql: "PRAGMA secure_delete = ON")
            try db.execute(sql: "PRAGMA foreign_keys = ON")
        }
        return try AppDatabase(writer: try DatabaseQueue(configuration: config), cachesDevboxes: cachesDevboxes)
    }

    /// The database and its `-wal`/`-shm` are 0600 whatever the umask: they hold every
    /// encrypted secret and the token hashes. SQLite creates its journal files with the
    /// database file's mode, so the database is made 0600 before SQLite opens it.
    ///
    /// Never opens an existing database: closing any descriptor of a file drops every POSIX
    /// lock this process holds on it, SQLite's included (another `AppDatabase` of the same file
    /// in this process, e.g. the serve's first-token check), which corrupts the database.
    /// A new file is made with O_EXCL, so no connection can hold it yet.
    static func restrictFiles(_ path: String) throws {
        let fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        if fd >= 0 {
            _ = fchmod(fd, 0o600)
            _ = close(fd)
        } else if errno != EEXIST {
            throw CocoaError(.fileWriteNoPermission, userInfo: [NSFilePathErrorKey: path])
        }
        for suffix in ["", "-wal", "-shm"] { _ = chmod(path + suffix, 0o600) }
    }

    /// SQLite's `PRAGMA data_version` on a connection that never writes: it changes whenever
    /// any other connection — this pool's writer, or another process such as
    /// `devbox token create` — has committed since the previous call. The value means nothing
    /// across connections, so it is always asked of the same one.
    ///
    /// Synchronous on purpose: an async read costs a hop to GRDB's queue per request, which
    /// took about a fifth of the GET throughput (wrk -c16, debug build) when authentication
    /// asked on every request. This one runs on the caller's thread and cannot wait: the
    /// probe connection has no busy timeout (SQLite answers BUSY at once, and then this
    /// answers nil) and in WAL mode the pragma only reads the WAL index in shared memory and,
    /// after a change, the first page from the OS cache. GRDB's queue serializes concurrent
    /// callers (the token cache asks from the request's thread): a wait of microseconds.
    public func dataVersion() -> Int? {
        try? probe().inDatabase { db in
            try Int.fetchOne(db.cachedStatement(sql: "PRAGMA data_version"))
        }
    }

    /// The count of commits that changed `provider_tokens` (kept by triggers, `v8-auth-version`),
    /// from any process. Synchronous like `dataVersion`, on the same connection: one row of
    /// a one-row table. Authentication reads it only after `dataVersion` moved, so the
    /// commits of creates, deletes and the pipeline (hundreds a second under churn) no
    /// longer make every request after them reload the tokens. nil: could not tell.
    public func authVersion() -> Int? {
        try? probe().inDatabase { db in
            try Int.fetchOne(db.cachedStatement(sql: "SELECT version FROM auth_version WHERE id = 1"))
        }
    }

    private func probe() throws -> DatabaseQueue {
        if path.isEmpty { throw NoFile() }
        return try versionProbe.withLock { probe in
            if let probe { return probe }
            let opened = try DatabaseQueue(path: path, configuration: Configuration())
            probe = opened
            return opened
        }
    }

    /// Copies the WAL into the main file and truncates the WAL to zero bytes, so content
    /// deleted with secure_delete leaves no copy in `-wal`. Retries while readers hold old snapshots.
    public func truncateWAL() async {
        for attempt in 0..<50 {
            do {
                let done: Bool = try await pool.writeWithoutTransaction { db in
                    let row = try Row.fetchOne(db, sql: "PRAGMA wal_checkpoint(TRUNCATE)")
                    return (row?[0] as Int?) == 0
                }
                if done { return }
            } catch {}
            try? await Task.sleep(for: .milliseconds(attempt < 10 ? 5 : 50))
        }
    }

    private struct NoFile: Error {}

    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1-core") { db in
            try db.execute(sql: """
                CREATE TABLE providers (
                    id TEXT PRIMARY KEY NOT NULL,
                    name TEXT NOT NULL UNIQUE,
                    created_at DATETIME NOT NULL
                );
                CREATE TABLE provider_tokens (
                    id TEXT PRIMARY KEY NOT NULL,
                    provider_id TEXT NOT NULL REFERENCES providers(id) ON DELETE CASCADE,
                    token_hash TEXT NOT NULL UNIQUE,
                    hint TEXT NOT NULL,
                    created_at DATETIME NOT NULL,
                    revoked_at DATETIME
                );
                CREATE TABLE users (
                    id TEXT PRIMARY KEY NOT NULL,
                    provider_id TEXT NOT NULL REFERENCES providers(id) ON DELETE CASCADE,
                    subject TEXT NOT NULL,
                    created_at DATETIME NOT NULL,
                    ssh_key_type TEXT,
                    ssh_key_fingerprint TEXT,
                    ssh_public_key TEXT,
                    ssh_key_updated_at DATETIME,
                    UNIQUE (provider_id, subject)
                );
                CREATE TABLE devboxes (
                    id TEXT PRIMARY KEY NOT NULL,
                    user_id TEXT NOT NULL REFERENCES users(id),
                    name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
                    plan TEXT NOT NULL,
                    state TEXT NOT NULL CHECK (state IN ('requested','provisioning','ready','stopped','destroyed','failed')),
                    env_keys TEXT NOT NULL,
                    setup_commands TEXT NOT NULL,
                    setup_timeout_seconds INTEGER NOT NULL CHECK (setup_timeout_seconds BETWEEN 30 AND 3600),
                    inject_claude_token BOOLEAN NOT NULL,
                    inject_codex_token BOOLEAN NOT NULL,
                    created_at DATETIME NOT NULL,
                    updated_at DATETIME NOT NULL,
                    ready_at DATETIME,
                    destroyed_at DATETIME,
                    error_operation TEXT,
                    error_message TEXT,
                    idle_timeout_seconds INTEGER,
                    ttl_seconds INTEGER,
                    expires_at DATETIME,
                    last_activity_at DATETIME,
                    lease_owner TEXT,
                    lease_expires_at DATETIME
                );
                CREATE INDEX devboxes_user ON devboxes(user_id, created_at);
                CREATE INDEX devboxes_state ON devboxes(state);
                CREATE TABLE operations (
                    id TEXT PRIMARY KEY NOT NULL,
                    devbox_id TEXT NOT NULL REFERENCES devboxes(id) ON DELETE CASCADE,
                    position INTEGER NOT NULL,
                    name TEXT NOT NULL,
                    status TEXT NOT NULL CHECK (status IN ('pending','running','succeeded','failed','skipped')),
                    started_at DATETIME,
                    finished_at DATETIME,
                    output TEXT NOT NULL DEFAULT '',
                    output_truncated BOOLEAN NOT NULL DEFAULT 0,
                    error TEXT,
                    UNIQUE (devbox_id, name),
                    UNIQUE (devbox_id, position)
                );
                CREATE TABLE devbox_env (
                    devbox_id TEXT NOT NULL REFERENCES devboxes(id) ON DELETE CASCADE,
                    key TEXT NOT NULL,
                    value_encrypted TEXT NOT NULL,
                    PRIMARY KEY (devbox_id, key)
                );
                CREATE TABLE devbox_pending_secrets (
                    devbox_id TEXT NOT NULL REFERENCES devboxes(id) ON DELETE CASCADE,
                    kind TEXT NOT NULL CHECK (kind IN ('claude','codex')),
                    value_encrypted TEXT NOT NULL,
                    PRIMARY KEY (devbox_id, kind)
                );
                CREATE TABLE devbox_repositories (
                    devbox_id TEXT NOT NULL REFERENCES devboxes(id) ON DELETE CASCADE,
                    position INTEGER NOT NULL,
                    repo_id INTEGER,
                    full_name TEXT NOT NULL,
                    ref TEXT NOT NULL,
                    target_path TEXT NOT NULL,
                    status TEXT NOT NULL CHECK (status IN ('pending','cloning','cloned','failed')),
                    resolved_commit TEXT,
                    error TEXT,
                    PRIMARY KEY (devbox_id, position)
                );
                CREATE TABLE access_sessions (
                    id TEXT PRIMARY KEY NOT NULL,
                    devbox_id TEXT NOT NULL REFERENCES devboxes(id) ON DELETE CASCADE,
                    user_id TEXT NOT NULL REFERENCES users(id),
                    created_at DATETIME NOT NULL,
                    expires_at DATETIME NOT NULL,
                    revoked_at DATETIME
                );
                CREATE INDEX access_sessions_devbox ON access_sessions(devbox_id);
                """)
        }
        m.registerMigration("v2-github") { db in
            // OAuth states are stored as SHA-256 hashes: a database reader cannot complete
            // someone's flow. Tokens are Fernet tokens (AppDatabase.encryptedColumns).
            try db.execute(sql: """
                CREATE TABLE github_oauth_states (
                    state_hash TEXT PRIMARY KEY NOT NULL,
                    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                    redirect_url TEXT NOT NULL,
                    created_at DATETIME NOT NULL,
                    expires_at DATETIME NOT NULL
                );
                CREATE INDEX github_oauth_states_expiry ON github_oauth_states(expires_at);
                CREATE TABLE github_connections (
                    user_id TEXT PRIMARY KEY NOT NULL REFERENCES users(id) ON DELETE CASCADE,
                    github_user_id INTEGER NOT NULL,
                    login TEXT NOT NULL,
                    scopes TEXT NOT NULL,
                    token_encrypted TEXT NOT NULL,
                    connected_at DATETIME NOT NULL
                );
                CREATE TABLE github_org_grants (
                    user_id TEXT NOT NULL REFERENCES github_connections(user_id) ON DELETE CASCADE,
                    org TEXT NOT NULL CHECK (org = lower(org) AND length(org) BETWEEN 1 AND 39),
                    granted_at DATETIME NOT NULL,
                    PRIMARY KEY (user_id, org)
                );
                """)
        }
        m.registerMigration("v3-lifetimes") { db in
            // The columns exist since v1-core; this makes the lifetime worker's query cheap
            // and gives devboxes made before lifetimes an activity clock.
            try db.execute(sql: """
                CREATE INDEX devboxes_lifetimes ON devboxes(state, expires_at);
                UPDATE devboxes SET last_activity_at = COALESCE(last_activity_at, ready_at, created_at);
                """)
        }
        m.registerMigration("v4-dashboard", migrate: migrateDashboard)
        m.registerMigration("v5-network") { db in
            // The egress policy as JSON ({"egress", "allow", "deny"}); NULL is allow_all.
            try db.execute(sql: "ALTER TABLE devboxes ADD COLUMN network TEXT")
        }
        m.registerMigration("v6-list-pages") { db in
            // Pages of a user's list (newest first) and the purge of destroyed devboxes.
            try db.execute(sql: """
                CREATE INDEX devboxes_user_created ON devboxes(user_id, created_at, id);
                CREATE INDEX devboxes_destroyed ON devboxes(state, destroyed_at);
                """)
        }
        m.registerMigration("v7-credential-mode", migrate: migrateCredentialMode)
        m.registerMigration("v8-list-states", migrate: migrateListStates)
        m.registerMigration("v8-auth-version", migrate: migrateAuthVersion)
        m.registerMigration("v8-git-broker", migrate: migrateGitBroker)
        m.registerMigration("v8-broker-usage", migrate: migrateBrokerUsage)
        m.registerMigration("v8-audit", migrate: migrateAudit)
        m.registerMigration("v8-images", migrate: migrateImages)
        m.registerMigration("v9-snapshots", migrate: migrateSnapshots)
        return m
    }
}
