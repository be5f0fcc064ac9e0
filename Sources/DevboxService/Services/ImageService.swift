import DevboxModel
import Foundation
import DevboxRuntime
import Synchronization

/// Which root filesystem boxes get (issue 18).
public enum BaseImageMode: Sendable, Equatable {
    /// The store's image of that name (default `debian`): built or imported once per machine.
    case store(defaultImage: String)
    /// The host's own root, private trees masked (`DEVBOX_BASE_IMAGE=host`): weaker.
    case host
    /// A root directory given by path (`DEVBOX_BASE_IMAGE=/path`).
    case path(String)
}

/// Whether the default image can be used yet: a serve that finds none builds it first.
public final class ImageReadiness: Sendable {
    public enum State: Sendable, Equatable {
        case ready
        case building(progress: String)
        case failed(String)
    }
    private let state: Mutex<State>
    public init(_ initial: State = .ready) { state = Mutex(initial) }
    public var current: State { state.withLock { $0 } }
    public func set(_ s: State) { state.withLock { $0 = s } }
    /// A progress line while building (ignored once ready or failed).
    public func progress(_ line: String) {
        state.withLock { if case .building = $0 { $0 = .building(progress: line) } }
    }
}

/// The image settings of the service: the machine's store, the default, readiness.
public struct ImageSettings: Sendable {
    /// The images creates may name (crun: the machine's `ImageStore`).
    public var store: any BoxImageCatalog
    public var mode: BaseImageMode
    public var readiness: ImageReadiness

    public init(
        store: any BoxImageCatalog = NoImages(), mode: BaseImageMode = .host, readiness: ImageReadiness = ImageReadiness()
    ) {
        self.store = store
        self.mode = mode
        self.readiness = readiness
    }

    /// What a devbox created without `image` shows: the default image's name, `host`, or the path.
    public var defaultLabel: String {
        switch mode {
        case .store(let name): name
        case .host: "host"
        case .path(let p): p
        }
    }
}

/// Images (issue 18): which image a create gets, the layers of a devbox's image for the
/// runtime, the default image's readiness (`/healthz`, a serve building it), and the warm
/// pool of boxes of the default plan and image.
public final class ImageService: Sendable {
    let settings: ImageSettings
    let sandbox: any BoxRuntime
    let startup: StartupGate
    let warmPoolSize: Int
    /// The limits of the default plan (the warm pool's boxes); nil when no plan has its name.
    let warmPoolLimits: BoxLimits?

    public init(settings: ImageSettings, runtime: any BoxRuntime, startup: StartupGate, warmPoolSize: Int, warmPoolLimits: BoxLimits?) {
        self.settings = settings
        self.sandbox = runtime
        self.startup = startup
        self.warmPoolSize = warmPoolSize
        self.warmPoolLimits = warmPoolLimits
    }

    /// The image a create gets: `image` when given (an image of the store; unknown → 422),
    /// else the default (503 while a serve still builds it).
    func imageOfCreate(_ request: CreateDevboxRequest) throws(ServiceError) -> String {
        if let name = request.image, name != settings.defaultLabel {
            guard settings.store.isValidName(name), settings.store.boxImage(named: name) != nil else {
                let known = settings.store.imageNames()
                throw .validation(
                    field: "image",
                    message: "unknown image '\(name)'; images: \(known.isEmpty ? "none" : known.joined(separator: ", ")) (devbox image list)")
            }
            return name
        }
        switch settings.readiness.current {
        case .ready: break
        case .building(let progress):
            throw .unavailable("the default image '\(settings.defaultLabel)' is being built (\(progress)); try again in a minute")
        case .failed(let message):
            throw .unavailable("the default image '\(settings.defaultLabel)' could not be built: \(message)")
        }
        return settings.defaultLabel
    }

    /// The layers of a devbox's image for the sandbox: nil for the default (the runtime's
    /// own), else the store's image (thrown when it went away since the create).
    func boxImage(ofDevbox image: String?) throws -> BoxImage? {
        guard let image, image != settings.defaultLabel else { return nil }
        guard let found = settings.store.boxImage(named: image) else {
            throw ServiceError.unavailable("image '\(image)' is no longer in the image store")
        }
        return found
    }

    func startWarmPoolIfConfigured() async {
        if warmPoolSize > 0, let limits = warmPoolLimits {
            await sandbox.startWarmPool(size: warmPoolSize, limits: limits)
        }
    }

    /// A serve's build of the default image is done (`image` now the sandbox's default):
    /// creates are taken, and the warm pool starts once start-up has run.
    public func defaultImageBuilt(_ image: BoxImage) async {
        sandbox.setDefaultImage(image)
        settings.readiness.set(.ready)
        if await startup.wait() { await startWarmPoolIfConfigured() }
    }

    public var imageSettings: ImageSettings { settings }

    /// `/healthz`'s view of the default image.
    public func imageHealth() -> (name: String, state: String, detail: String?) {
        switch settings.readiness.current {
        case .ready: return (settings.defaultLabel, "ready", nil)
        case .building(let p): return (settings.defaultLabel, "building", p)
        case .failed(let m): return (settings.defaultLabel, "failed", m)
        }
    }

    /// How many boxes the warm pool keeps started, and how many are ready now.
    public func warmPool() -> (target: Int, idle: Int) { sandbox.warmPool() }
}
