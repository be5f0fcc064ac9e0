/// Encrypts secrets at rest (env values, pending AI tokens, GitHub tokens).
public protocol SecretCipher: Sendable {
    func seal(_ plaintext: String) throws -> String
    func open(_ token: String) throws -> String
}
