import Foundation

/// The user's registered SSH public key, as shown on the profile.
public struct SSHKeyInfo: Codable, Sendable, Equatable {
    public var type: String
    public var fingerprint: String
    public var publicKey: String
    public var updatedAt: Date

    public init(type: String, fingerprint: String, publicKey: String, updatedAt: Date) {
        self.type = type
        self.fingerprint = fingerprint
        self.publicKey = publicKey
        self.updatedAt = updatedAt
    }

    enum CodingKeys: String, CodingKey {
        case type, fingerprint
        case publicKey = "public_key"
        case updatedAt = "updated_at"
    }
}

/// `GET /api/v1/users/me`.
public struct UserProfile: Codable, Sendable, Equatable {
    public var id: String
    public var externalId: String?
    public var providerTokenId: String
    public var createdAt: Date
    public var sshKey: SSHKeyInfo?

    public init(id: String, externalId: String?, providerTokenId: String, createdAt: Date, sshKey: SSHKeyInfo?) {
        self.id = id
        self.externalId = externalId
        self.providerTokenId = providerTokenId
        self.createdAt = createdAt
        self.sshKey = sshKey
    }

    enum CodingKeys: String, CodingKey {
        case id
        case externalId = "external_id"
        case providerTokenId = "provider_token_id"
        case createdAt = "created_at"
        case sshKey = "ssh_key"
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(externalId, forKey: .externalId)
        try c.encode(providerTokenId, forKey: .providerTokenId)
        try c.encode(createdAt, forKey: .createdAt)
        try c.encode(sshKey, forKey: .sshKey)
    }
}

/// `PUT /api/v1/users/me/ssh-key` body.
public struct SetSSHKeyRequest: Codable, Sendable {
    public var publicKey: String
    public init(publicKey: String) { self.publicKey = publicKey }
    enum CodingKeys: String, CodingKey { case publicKey = "public_key" }
}
