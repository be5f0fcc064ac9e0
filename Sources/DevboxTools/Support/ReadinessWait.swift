import DevboxModel
import Transport

/// Watches a devbox until it is ready, has failed, or the deadline passes, reporting progress
/// at every state and step change. Shared by `wait_for_ready` and `create_devbox` (wait: true).
/// Re-reads the devbox when the backend's change feed says it changed (the service in this
/// process); polls every `pollInterval` where there is no feed, or once it has ended.
enum ReadinessWait {
    enum Ending: Sendable {
        case ready, failed, timedOut
    }

    struct Outcome: Sendable {
        var ending: Ending
        var devbox: Devbox
        var operations: [DevboxOperation]
        var waited: Duration
    }

    /// Progress score: strictly increases with every observed change (a state step, a step
    /// starting, a step finishing), so each change can be reported (progress must increase).
    static let totalScore = 2 + 2 * OperationKind.allCases.count

    static func score(_ box: Devbox, _ ops: [DevboxOperation]) -> Int {
        var s = 0
        switch box.state {
        case .requested: s = 0
        case .provisioning: s = 1
        case .ready, .failed, .destroyed, .stopped: s = 2
        }
        for op in ops {
            switch op.status {
            case .pending: break
            case .running: s += 1
            case .succeeded, .failed, .skipped: s += 2
            }
        }
        return s
    }

    static func message(_ box: Devbox, _ ops: [DevboxOperation]) -> String {
        let done = ops.filter { $0.status.isFinished }.count
        var m = "devbox \(box.id) is \(box.state.rawValue)"
        if let running = ops.first(where: { $0.status == .running }) {
            m += ": \(running.name.rawValue) running"
        } else if let failed = ops.first(where: { $0.status == .failed }) {
            m += ": \(failed.name.rawValue) failed"
        }
        if !ops.isEmpty { m += " (\(done)/\(ops.count) steps finished)" }
        return m
    }

    static func run(devboxId: String, timeout: Duration, call: ToolCall) async throws -> Outcome {
        let clock = ContinuousClock()
        let start = clock.now
        let deadline = start + timeout
        var last = -1
        // Subscribed before the first read: a change after any read wakes the wait after it.
        var feed = call.backend.changeFeed(devboxId: devboxId)
        defer { feed?.cancel() }
        while true {
            try Task.checkCancellation()
            let box = try await call.backend.devbox(id: devboxId)
            let ops = try await call.backend.operations(devboxId: devboxId)
            let s = score(box, ops)
            if s > last {
                last = s
                await call.request.reportProgress(
                    progress: Double(s), total: Double(totalScore), message: message(box, ops))
            }
            let now = clock.now
            if box.state == .ready { return Outcome(ending: .ready, devbox: box, operations: ops, waited: now - start) }
            if box.state.isTerminalFailure {
                return Outcome(ending: .failed, devbox: box, operations: ops, waited: now - start)
            }
            if now >= deadline { return Outcome(ending: .timedOut, devbox: box, operations: ops, waited: now - start) }
            if let f = feed {
                if await !f.next(timeout: deadline - now) {
                    f.cancel()
                    feed = nil
                }
            } else {
                try await Task.sleep(for: min(call.backend.pollInterval, deadline - now))
            }
        }
    }
}

extension ReadinessWait {
    /// The result schema of `wait_for_ready` (`create_devbox` with wait: true returns the same).
    static func outputSchema() -> JSONValue {
        Schema.output(
            [
                "devbox": Schema.devboxRef,
                "failed_operation": Schema.typed(["object", "null"], "As in list_operations."),
                "waited_seconds": Schema.typed("number"),
                "timed_out": Schema.typed("boolean", "The wait ran out; provisioning goes on."),
                "next_step": Schema.nextStep,
            ])
    }
}

extension ReadinessWait.Outcome {
    static let failureTailBytes = 4000

    var failedOperation: DevboxOperation? {
        if let op = operations.first(where: { $0.status == .failed }) { return op }
        if let name = devbox.error?.operation { return operations.first { $0.name.rawValue == name } }
        return nil
    }

    var waitedSeconds: Double {
        let c = waited.components
        return ((Double(c.seconds) + Double(c.attoseconds) / 1e18) * 1000).rounded() / 1000
    }

    /// The tool result: structured `{devbox, failed_operation, waited_seconds, timed_out,
    /// next_step}`; `isError` only when the devbox failed (or will not become ready).
    func result(tool: String) throws -> MCPToolResult {
        let failed = ending == .failed ? failedOperation : nil
        let next: String
        switch ending {
        case .ready:
            next =
                "The devbox is ready: run commands in it with run_command, and read and change its files with read_file, write_file and list_files (devbox_id \"\(devbox.id)\"). For a human's interactive shell: set_ssh_key, then create_session."
        case .failed where devbox.state == .failed:
            next =
                "Read the full setup output with list_operations (devbox_id \"\(devbox.id)\"), fix the cause (usually setup_commands), delete_devbox this one and create_devbox again."
        case .failed:
            next = "The devbox is \(devbox.state.rawValue) and will not become ready; create a new one with create_devbox."
        case .timedOut:
            next =
                "Stopped waiting after \(Int(waitedSeconds.rounded())) s; \(ReadinessWait.message(devbox, operations)). Call wait_for_ready with devbox_id \"\(devbox.id)\" to keep waiting, or list_operations to see the output so far."
        }
        let value: JSONValue = [
            "devbox": ToolJSON.devbox(devbox),
            "failed_operation": failed.map { OperationView.json($0, tailBytes: Self.failureTailBytes) } ?? .null,
            "waited_seconds": .double(waitedSeconds),
            "timed_out": .bool(ending == .timedOut),
            "next_step": .string(next),
        ]
        switch ending {
        case .ready, .timedOut:
            // A wait that ran out is not a failure of the call: the devbox is still on its way and
            // the agent decides whether to wait on (timed_out says so).
            return .structured(value)
        case .failed:
            var text = "Devbox \(devbox.id) is \(devbox.state.rawValue)"
            if let failed {
                text += ": step \(failed.name.rawValue) failed"
                if let e = failed.error ?? devbox.error?.message { text += ": \(e)" }
                let tail = OperationView.tail(failed.output, bytes: Self.failureTailBytes)
                text += tail.text.isEmpty ? ". It printed no output." : ".\nOutput tail:\n\(tail.text)"
            } else if let e = devbox.error {
                text += ": \(e.operation): \(e.message)"
            }
            return ToolFailure(text + "\nNext: " + next, structured: value).result
        }
    }
}

/// An operation as the tools show it: output cut to its last bytes.
enum OperationView {
    /// The last `bytes` bytes of `output`, starting at a character boundary.
    static func tail(_ output: String, bytes: Int) -> (text: String, cut: Bool) {
        let utf8 = output.utf8
        guard utf8.count > bytes else { return (output, false) }
        var start = utf8.index(utf8.endIndex, offsetBy: -bytes)
        // Skip UTF-8 continuation bytes so the tail starts on a whole character.
        while start < utf8.endIndex, utf8[start] & 0xC0 == 0x80 { start = utf8.index(after: start) }
        return (String(output[start...]), true)
    }

    static func json(_ op: DevboxOperation, tailBytes: Int) -> JSONValue {
        let t = tail(op.output, bytes: tailBytes)
        return [
            "name": .string(op.name.rawValue),
            "status": .string(op.status.rawValue),
            "started_at": ToolJSON.date(op.startedAt),
            "finished_at": ToolJSON.date(op.finishedAt),
            "error": op.error.map { .string($0) } ?? .null,
            "output_tail": .string(t.text),
            "output_truncated": .bool(t.cut || op.outputTruncated),
        ]
    }
}
