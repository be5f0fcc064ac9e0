import DevboxModel
import Testing

@testable import DevboxService

@Suite("Devbox state machine (no I/O)")
struct StateMachineTests {
    @Test("every live state can be destroyed; destroyed is final")
    func destroyFromAnywhere() {
        for s in DevboxState.allCases where s != .destroyed {
            #expect(DevboxStateMachine.canTransition(from: s, to: .destroyed), "\(s) → destroyed")
        }
        for s in DevboxState.allCases {
            #expect(!DevboxStateMachine.canTransition(from: .destroyed, to: s))
        }
    }

    @Test("the provisioning path and what it forbids")
    func provisioningPath() {
        #expect(DevboxStateMachine.canTransition(from: .requested, to: .provisioning))
        #expect(DevboxStateMachine.canTransition(from: .provisioning, to: .ready))
        #expect(DevboxStateMachine.canTransition(from: .provisioning, to: .failed))
        #expect(!DevboxStateMachine.canTransition(from: .requested, to: .ready))
        #expect(!DevboxStateMachine.canTransition(from: .failed, to: .ready))
        #expect(!DevboxStateMachine.canTransition(from: .ready, to: .provisioning))
        #expect(!DevboxStateMachine.canTransition(from: .failed, to: .provisioning))
        #expect(DevboxStateMachine.canTransition(from: .ready, to: .stopped))
        #expect(DevboxStateMachine.canTransition(from: .stopped, to: .ready))
        #expect(!DevboxStateMachine.canTransition(from: .requested, to: .stopped))
    }

    @Test("stop only from ready, start only from stopped; a stopped devbox keeps its sandbox")
    func stopStart() {
        for s in DevboxState.allCases {
            #expect(DevboxStateMachine.canTransition(from: s, to: .stopped) == (s == .ready), "\(s) → stopped")
        }
        for s in DevboxState.allCases where s != .provisioning {
            #expect(DevboxStateMachine.canTransition(from: s, to: .ready) == (s == .stopped), "\(s) → ready")
        }
        #expect(!DevboxStateMachine.canTransition(from: .stopped, to: .provisioning))
        #expect(DevboxStateMachine.sandboxStates.contains(.stopped))
    }

    @Test("the table names every state")
    func tableIsComplete() {
        #expect(Set(DevboxStateMachine.transitions.keys) == Set(DevboxState.allCases))
    }

    @Test("operations move forward only, except a crash-interrupted running step")
    func operationTransitions() {
        #expect(OperationStateMachine.canTransition(from: .pending, to: .running))
        #expect(OperationStateMachine.canTransition(from: .running, to: .succeeded))
        #expect(OperationStateMachine.canTransition(from: .running, to: .pending))
        for final in [OperationStatus.succeeded, .failed, .skipped] {
            for to in OperationStatus.allCases {
                #expect(!OperationStateMachine.canTransition(from: final, to: to))
            }
        }
    }
}

@Suite("Tail buffer")
struct TailBufferTests {
    @Test("keeps the last bytes and says it cut")
    func keepsTail() {
        var t = TailBuffer(limit: 10)
        t.append(Array("0123456789".utf8))
        #expect(!t.truncated)
        t.append(Array("abc".utf8))
        #expect(t.truncated)
        #expect(t.output.text == "3456789abc")
    }
}
