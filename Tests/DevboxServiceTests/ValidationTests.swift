import DevboxModel
import Testing

@testable import DevboxService

@Suite("Create validation")
struct ValidationTests {
    func validate(_ r: CreateDevboxRequest) throws(ServiceError) -> ValidatedCreate {
        try CreateValidation.validate(r, plans: Plan.defaults, defaultPlan: "small")
    }

    func field(_ r: CreateDevboxRequest) -> String? {
        do {
            _ = try validate(r)
            return nil
        } catch {
            return error.field
        }
    }

    @Test("defaults: plan small, timeout 900, branch main, target path from the repo name")
    func defaults() throws {
        let v = try validate(CreateDevboxRequest(name: "a", repository: "https://github.com/octo/hello.git"))
        #expect(v.plan.name == "small")
        #expect(v.setupTimeoutSeconds == 900)
        #expect(v.repositories == [DevboxRepositoryRequest(fullName: "octo/hello", ref: "main", targetPath: "/workspace/hello")])
    }

    @Test("boundaries are inclusive")
    func boundaries() throws {
        _ = try validate(CreateDevboxRequest(name: String(repeating: "x", count: 64), setupTimeoutSeconds: 30))
        _ = try validate(CreateDevboxRequest(name: "a", setupTimeoutSeconds: 3600))
        _ = try validate(CreateDevboxRequest(
            name: "a", env: Dictionary(uniqueKeysWithValues: (0..<64).map { ("K\($0)", String(repeating: "v", count: 32 * 1024)) }),
            setupCommands: Array(repeating: String(repeating: "c", count: 4096), count: 32)))
    }

    @Test("each limit names its field")
    func fields() {
        #expect(field(CreateDevboxRequest(name: "")) == "name")
        #expect(field(CreateDevboxRequest(name: "a\nb")) == "name")
        #expect(field(CreateDevboxRequest(name: "a", plan: "xl")) == "plan")
        #expect(field(CreateDevboxRequest(name: "a", env: ["a": "b"])) == "env.a")
        #expect(field(CreateDevboxRequest(name: "a", setupTimeoutSeconds: 3601)) == "setup_timeout_seconds")
        #expect(field(CreateDevboxRequest(name: "a", repositories: [.init(fullName: "o/r", targetPath: "/workspace")])) == "repositories[0].target_path")
        #expect(field(CreateDevboxRequest(name: "a", repositories: [.init(fullName: "o/r", targetPath: "/workspace/a/./b")])) == "repositories[0].target_path")
        #expect(field(CreateDevboxRequest(name: "a", repositories: [.init(fullName: "o/r"), .init(fullName: "p/r")])) == "repositories[1].target_path")
        #expect(field(CreateDevboxRequest(name: "a", branch: "dev")) == "branch")
    }

    @Test("env keys follow ^[A-Z_][A-Z0-9_]*$")
    func envKeys() {
        #expect(CreateValidation.isEnvKey("_A1"))
        #expect(CreateValidation.isEnvKey("PATH"))
        #expect(!CreateValidation.isEnvKey("1A"))
        #expect(!CreateValidation.isEnvKey("a"))
        #expect(!CreateValidation.isEnvKey(""))
        #expect(!CreateValidation.isEnvKey("A-B"))
    }

    @Test("refs that git would read as options or that escape are refused")
    func refs() {
        for bad in ["-x", "a..b", "a b", "a~1", "x.lock", "/a", "a//b", ""] {
            #expect(!CreateValidation.isSafeRef(bad), "\(bad)")
        }
        for good in ["main", "v1.2.3", "feature/x", "0123456789abcdef0123456789abcdef01234567"] {
            #expect(CreateValidation.isSafeRef(good), "\(good)")
        }
    }
}
