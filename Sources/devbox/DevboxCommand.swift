import ArgumentParser

/// `devbox`: the service (`serve`, `mcp`) and its command line.
@main
struct DevboxCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "devbox",
        abstract: "On-demand development environments for humans and AI agents.",
        subcommands: [
            ServeCommand.self, MCPCommand.self, TokenCommand.self, KeysCommand.self, ImageCommand.self, CreateCommand.self,
            ListCommand.self, GetCommand.self, LogsCommand.self, SSHCommand.self, ExecCommandLine.self, FilesCommand.self,
            StopCommand.self, StartCommand.self, DeleteCommand.self, NetworkCommand.self, StatsCommand.self,
            SnapshotCommand.self, SnapshotsCommand.self, ForkCommand.self,
            SSHKeyCommand.self, GitHubCommand.self, AuditCommand.self, InstallServiceCommand.self, BackupCommand.self, RestoreCommand.self,
        ])
}
