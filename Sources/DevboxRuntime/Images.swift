// Images: what a box runs on, and the catalog of images a runtime can run.

/// The image a box runs on: its name and, for runtimes that assemble a root from layers
/// on this host (crun, gVisor), its overlay lower dirs (top first) and the store they are
/// in (nil: an explicit path). A runtime that pulls images itself (Kubernetes) uses `name`.
public struct BoxImage: Sendable, Equatable, Codable {
    public var name: String
    public var lowerDirs: [String]
    /// The store the layers are in (its refs name this box), nil for an explicit path.
    public var store: String?
    /// A box from a snapshot (issue 23): the lower dirs of its /workspace (top first); nil:
    /// a workspace of its own from empty.
    public var workspaceLowerDirs: [String]?

    public init(name: String, lowerDirs: [String], store: String?, workspaceLowerDirs: [String]? = nil) {
        self.name = name
        self.lowerDirs = lowerDirs
        self.store = store
        self.workspaceLowerDirs = workspaceLowerDirs
    }
}

/// The images boxes can be created from (crun: the machine's `ImageStore`).
public protocol BoxImageCatalog: Sendable {
    /// Where the images are (for messages and logs).
    var location: String { get }
    /// Whether `name` is a well-formed image name.
    func isValidName(_ name: String) -> Bool
    /// The names of the images there are now.
    func imageNames() -> [String]
    /// The image `name` as a create takes it; nil when there is none.
    func boxImage(named name: String) -> BoxImage?
}

/// A catalog without images (a runtime or a test that has none).
public struct NoImages: BoxImageCatalog {
    public init() {}
    public var location: String { "(none)" }
    public func isValidName(_ name: String) -> Bool { false }
    public func imageNames() -> [String] { [] }
    public func boxImage(named name: String) -> BoxImage? { nil }
}
