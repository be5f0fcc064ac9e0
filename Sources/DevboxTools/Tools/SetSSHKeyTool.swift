import DevboxModel
import Foundation
import Transport

/// `set_ssh_key`: registers the user's SSH public key (needed before `create_session`).
struct SetSSHKeyTool: DevboxTool {
    struct Input: ToolInput {
        var publicKey: String
        enum CodingKeys: String, CodingKey { case publicKey = "public_key" }
    }

    let definition = MCPTool(
        name: "set_ssh_key",
        title: "Set SSH public key",
        description: """
            Register the user's SSH public key (ed25519 or ECDSA) for create_session, replacing any old one; returns \
            ssh_key {type, fingerprint}. Never a private key.
            """,
        inputSchema: Schema.object(
            ["public_key": Schema.string("One OpenSSH public key line (a .pub file).")],
            required: ["public_key"]),
        annotations: .init(readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false))

    func nextStep(after error: DevboxAPIError) -> String? {
        error.status == 422
            ? "Pass the single line from an ed25519 public key file (ssh-keygen -t ed25519 creates one) and call set_ssh_key again."
            : nil
    }

    func run(_ input: Input, _ call: ToolCall) async throws -> MCPToolResult {
        if input.publicKey.contains("PRIVATE KEY") {
            throw ToolFailure(
                "That is a private key: never share it. Pass the public key instead (the .pub file next to it) and call set_ssh_key again.")
        }
        try await call.backend.setSSHKey(input.publicKey.trimmingCharacters(in: .whitespacesAndNewlines))
        let profile = try await call.backend.profile()
        guard let key = profile.sshKey else {
            throw ToolFailure("The key was accepted but is not on the profile yet; call set_ssh_key again.")
        }
        return .structured(["ssh_key": try ToolJSON.value(key)])
    }
}
