import DevboxModel
import Foundation
import Testing

@testable import DevboxServer
@testable import DevboxService

/// Issue 19's git broker: the pkt-line command parser a push is judged by, the branch globs,
/// the path, and `push_branches` validation.
@Suite("Git broker")
struct GitBrokerTests {
    static let a = String(repeating: "a", count: 40)
    static let b = String(repeating: "b", count: 40)
    static let zero = String(repeating: "0", count: 40)

    func pkt(_ s: String) -> [UInt8] { GitBroker.pkt(s) }

    @Test func commandsWithCapabilitiesShallowAndPack() {
        let body = pkt("shallow \(Self.a)\n") + pkt("\(Self.zero) \(Self.a) refs/heads/agent/x\0report-status side-band-64k agent=git/2\n")
            + pkt("\(Self.a) \(Self.b) refs/heads/main\n") + Array("0000PACK....".utf8)
        guard case .complete(let c) = ReceivePackCommands.parse(body[...]) else { Issue.record("not parsed"); return }
        #expect(c.updates.map(\.ref) == ["refs/heads/agent/x", "refs/heads/main"])
        #expect(c.capabilities.contains("report-status") && c.capabilities.contains("side-band-64k"))
        #expect(c.updates[0].new == Self.a)
    }

    @Test func partialInputAsksForMoreAndGarbageIsInvalid() {
        let whole = pkt("\(Self.zero) \(Self.a) refs/heads/x\0report-status\n") + Array("0000".utf8)
        for cut in [0, 3, 4, 20, whole.count - 1] {
            #expect(ReceivePackCommands.parse(whole[..<cut]) == .needMore, "cut \(cut)")
        }
        #expect(ReceivePackCommands.parse(Array("zzzz".utf8)[...]) != .needMore)
        if case .invalid = ReceivePackCommands.parse(pkt("hello world\n")[...]) {} else { Issue.record("accepted garbage") }
        if case .invalid = ReceivePackCommands.parse((pkt("push-cert\0report-status\n") + Array("0000".utf8))[...]) {} else {
            Issue.record("accepted a push certificate")
        }
        if case .invalid = ReceivePackCommands.parse(Array("0001".utf8)[...]) {} else { Issue.record("accepted a delimiter") }
    }

    @Test func globs() {
        #expect(GitBrokerService.branchMatches("agent/x", globs: ["agent/*"]))
        #expect(!GitBrokerService.branchMatches("agent/x/y", globs: ["agent/*"]))
        #expect(GitBrokerService.branchMatches("agent/x/y", globs: ["agent/**"]))
        #expect(!GitBrokerService.branchMatches("main", globs: ["agent/*", "feature-*"]))
        #expect(GitBrokerService.branchMatches("main", globs: ["agent/*", "main"]))
        #expect(!GitBrokerService.branchMatches("mainx", globs: ["main"]))
        #expect(!GitBrokerService.branchMatches("agent", globs: ["agent/*"]))
        #expect(GitBrokerService.branchMatches("fix-1-2", globs: ["fix-*-*"]))
        #expect(GitBrokerService.branchMatches(String(repeating: "a", count: 200), globs: ["*a*a*a*a*a*b*", "*"]))
    }

    @Test func paths() {
        let t = GitBroker.parse("/git/dbx_1/abc123/alice/app.git/info/refs")
        #expect(t?.devboxId == "dbx_1" && t?.secret == "abc123" && t?.fullName == "alice/app" && t?.rest == "/info/refs")
        #expect(GitBroker.parse("/git/dbx_1/abc/alice/app/info/refs") == nil)
        #expect(GitBroker.parse("/git/dbx_1/abc/../app.git/info/refs") == nil)
        #expect(GitBroker.parse("/git/dbx_1/abc/alice") == nil)
        #expect(GitBroker.queryService("service=git-receive-pack") == "git-receive-pack")
        #expect(GitBroker.queryService("service=git-upload-archive") == nil)
    }

    @Test func pushBranchesValidation() {
        func field(_ globs: [String]) -> String? {
            let r = CreateDevboxRequest(name: "x", repositories: [DevboxRepositoryRequest(fullName: "a/b", pushBranches: globs)])
            do {
                _ = try CreateValidation.validate(r, plans: Plan.defaults, defaultPlan: "small")
                return nil
            } catch { return error.field }
        }
        #expect(field(["agent/*"]) == nil)
        #expect(field(["*"]) == nil)
        #expect(field([]) == "repositories[0].push_branches")
        #expect(field(["ok", ""]) == "repositories[0].push_branches[1]")
        #expect(field([".x"]) == "repositories[0].push_branches[0]")
        #expect(field(["a b"]) == "repositories[0].push_branches[0]")
        #expect(field([String(repeating: "x", count: 201)]) == "repositories[0].push_branches[0]")
        #expect(field((0..<33).map { "b\($0)" }) == "repositories[0].push_branches")
    }
}
