import DevboxTestSupport
import Foundation
import Testing

@testable import DevboxService

/// The runtime seam (issue 20, docs/ARCHITECTURE.md "Runtimes"): the service and the SSH
/// gateway see boxes only through DevboxRuntime, and DevboxRuntime depends on nothing heavy,
/// so a second runtime (or a test's fake) implements it without crun. Checked on the sources:
/// SwiftPM lets a target import a module it does not declare once that module is built.
@Suite("Runtime seam: module boundaries (no I/O but the sources)")
struct RuntimeSeamTests {
    static let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Sources")

    static func imports(of module: String) throws -> [(file: String, module: String)] {
        let dir = sources.appendingPathComponent(module)
        guard let walk = FileManager.default.enumerator(at: dir, includingPropertiesForKeys: nil) else { return [] }
        var out: [(String, String)] = []
        for case let url as URL in walk where url.pathExtension == "swift" {
            for line in try String(contentsOf: url, encoding: .utf8).split(separator: "\n") {
                let words = line.split(separator: " ")
                guard let i = words.firstIndex(of: "import"), i + 1 < words.count,
                    words[..<i].allSatisfy({ $0.hasPrefix("@") || $0 == "public" || $0 == "package" || $0 == "internal" })
                else { continue }
                out.append((url.lastPathComponent, String(words[i + 1])))
            }
        }
        return out
    }

    @Test("DevboxService and SSHGateway never import the crun runtime (Sandbox)")
    func serviceSeesNoCrun() throws {
        for module in ["DevboxService", "SSHGateway", "DevboxServer"] {
            let all = try Self.imports(of: module)
            #expect(!all.isEmpty, "no sources of \(module) found under \(Self.sources.path)")
            let found = all.filter { $0.module == "Sandbox" }.map(\.file)
            #expect(found.isEmpty, "\(module) imports Sandbox in \(found)")
        }
    }

    @Test("DevboxRuntime imports only the standard library's modules")
    func runtimeModuleIsSmall() throws {
        let allowed: Set<String> = ["Foundation", "Glibc", "Synchronization"]
        let found = try Self.imports(of: "DevboxRuntime")
        #expect(!found.isEmpty, "no sources found under \(Self.sources.path)")
        for (file, module) in found {
            #expect(allowed.contains(module), "DevboxRuntime/\(file) imports \(module)")
        }
    }
}

/// What the API answers for each error a runtime may throw (`RuntimeService.runtimeFailure`): the
/// service matches on the seam's own error enums, so any runtime's errors map the same way.
@Suite("Runtime seam: the runtime's errors as the API answers them (fake runtime)")
struct RuntimeErrorMappingTests {
    struct Other: Error {}

    @Test("BoxRuntimeError and BoxFileError cases map to 409/400/404/413/422; anything else is 503")
    func mapping() async throws {
        try await withFastSystem { fast in
            let cases: [(any Error, Int, String?)] = [
                (BoxRuntimeError.notRunning("b"), 409, nil),
                (BoxRuntimeError.notFound("b"), 409, nil),
                (BoxRuntimeError.invalidArgument("bad"), 400, nil),
                (BoxRuntimeError.invalidEnvironment("bad env"), 400, nil),
                (BoxRuntimeError.system("connect", errno: EIO), 503, nil),
                (BoxRuntimeError.commandFailed("crun", status: 1, message: "x"), 503, nil),
                (BoxFileError.notFound, 404, nil),
                (BoxFileError.tooLarge(limit: 1, size: 2), 413, nil),
                (BoxFileError.noSpace, 413, nil),
                (BoxFileError.mountPoint("/proc"), 409, nil),
                (BoxFileError.escapes, 422, "path"),
                (BoxFileError.invalidPath("relative"), 422, "path"),
                (BoxFileError.system("openat2", errno: EIO), 503, nil),
                (Other(), 503, nil),
                (ServiceError.notFound("kept as it is"), 404, nil),
            ]
            for (error, status, field) in cases {
                let e = await fast.services.runtime.runtimeFailure(error, id: "dbx_x", what: "exec")
                #expect(e.statusCode == status, "\(error) → \(e)")
                if let field { #expect(e.field == field, "\(error) → \(e)") }
            }
        }
    }
}
