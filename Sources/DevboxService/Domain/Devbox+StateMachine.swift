import DevboxModel

/// The allowed state transitions of a devbox: one table, checked by every state write.
public enum DevboxStateMachine {
    /// Every allowed `from → to` pair. `destroyed` is reachable from any live state.
    public static let transitions: [DevboxState: Set<DevboxState>] = [
        .requested: [.provisioning, .failed, .destroyed],
        .provisioning: [.provisioning, .ready, .failed, .destroyed],
        .ready: [.stopped, .failed, .destroyed],
        .stopped: [.ready, .failed, .destroyed],
        .failed: [.destroyed],
        .destroyed: [],
    ]

    public static func canTransition(from: DevboxState, to: DevboxState) -> Bool {
        transitions[from]?.contains(to) ?? false
    }

    /// States in which the provisioning pipeline still has work to do.
    public static let pipelineStates: Set<DevboxState> = [.requested, .provisioning]

    /// States in which a sandbox may exist on the host.
    public static let sandboxStates: Set<DevboxState> = [.provisioning, .ready, .stopped]
}

/// Allowed status transitions of one operation.
public enum OperationStateMachine {
    public static let transitions: [OperationStatus: Set<OperationStatus>] = [
        .pending: [.running, .skipped, .failed],
        // running → skipped: a step finds it has nothing to do.
        // running → pending: the pipeline restarts a step interrupted by a service crash.
        .running: [.succeeded, .failed, .skipped, .pending],
        .succeeded: [],
        .failed: [],
        .skipped: [],
    ]

    public static func canTransition(from: OperationStatus, to: OperationStatus) -> Bool {
        transitions[from]?.contains(to) ?? false
    }

    /// The restart of an interrupted pipeline (`AppDatabase.restartOperations`, in one commit
    /// with the sandbox destroyed before it) sets every operation that left `pending` back to
    /// it. Not from `failed`: a failed step fails its devbox, which never runs again.
    public static let restartable: Set<OperationStatus> = [.running, .succeeded, .skipped]
}
