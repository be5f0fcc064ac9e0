/// The URL of a port of a devbox: `<base>/api/v1/devboxes/<id>/ports/<port>/`.
public enum PortURL {
    public static func make(base: String, devboxId: String, port: Int) -> String {
        var b = base
        while b.hasSuffix("/") { b.removeLast() }
        return "\(b)/api/v1/devboxes/\(devboxId)/ports/\(port)/"
    }
}
