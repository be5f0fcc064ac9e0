import DevboxModel
import DevboxService
import Hummingbird

/// `/api/v1/users/me`: the caller's profile and SSH key.
struct UsersController {
    let reads: DevboxReads
    let access: AccessService

    func register(on router: some RouterMethods<AppRequestContext>, table: RouteTable) {
        router.route(table, .get, "/api/v1/users/me", use: me)
        router.route(table, .put, "/api/v1/users/me/ssh-key", use: setKey)
        router.route(table, .delete, "/api/v1/users/me/ssh-key", use: deleteKey)
    }

    @Sendable func me(_ request: Request, context: AppRequestContext) async throws -> Response {
        try JSONIO.response(try await reads.profile(try context.requirePrincipal()))
    }

    @Sendable func setKey(_ request: Request, context: AppRequestContext) async throws -> Response {
        let body = try await JSONIO.decode(SetSSHKeyRequest.self, from: request, limit: 64 * 1024)
        try await access.setSSHKey(try context.requirePrincipal(), publicKey: body.publicKey)
        return JSONIO.noContent()
    }

    @Sendable func deleteKey(_ request: Request, context: AppRequestContext) async throws -> Response {
        try await access.deleteSSHKey(try context.requirePrincipal())
        return JSONIO.noContent()
    }
}
