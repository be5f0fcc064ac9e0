import DevboxModel
import Foundation
import DevboxRuntime

/// Egress policies (`network` on create, `GET|PATCH /api/v1/devboxes/:id/network`).
extension RuntimeService {
    /// Validates a policy as given; every failure names its field (`network.allow[2]`).
    static func egressPolicy(_ n: DevboxNetwork, field: String = "network") throws(ServiceError) -> EgressPolicy {
        do {
            return try EgressPolicy.parse(egress: n.egress, allow: n.allow, deny: n.deny, field: field)
        } catch {
            throw .validation(field: error.field, message: error.message)
        }
    }

    /// The policy as the service stores and shows it: normalised entries.
    static func normalized(_ p: EgressPolicy) -> DevboxNetwork {
        DevboxNetwork(egress: p.egress.rawValue, allow: p.allow, deny: p.deny)
    }

    /// A policy other than allow_all needs boxes on networks of their own: stored but not
    /// enforced would be worse than refused.
    static func requireEnforceable(_ n: DevboxNetwork, runtime: any BoxRuntime) throws(ServiceError) {
        guard n != .allowAll, !runtime.isolatesNetworks else { return }
        throw .validation(
            field: "network",
            message: "this server runs boxes on the host's network (DEVBOX_NETWORK=host), so an egress policy cannot be enforced; only allow_all is accepted")
    }

    /// Replaces a live devbox's policy: stored first, then applied to its box (if it has one
    /// yet; a devbox still being provisioned gets it when its box is made). New connections
    /// follow it at once; connections already open are kept.
    func setNetworkUnaudited(_ principal: Principal, id: String, _ n: DevboxNetwork) async throws(ServiceError) -> DevboxNetwork {
        let policy = try Self.egressPolicy(n)
        try Self.requireEnforceable(Self.normalized(policy), runtime: sandbox)
        let current = try await reads.devbox(principal, id: id)
        guard current.state != .destroyed else { throw .conflict("devbox \(id) is destroyed; create a new devbox") }
        let normalized = Self.normalized(policy)
        do {
            guard try await db.setNetwork(devboxId: id, userId: principal.userId, network: normalized, now: Date()) else {
                throw ServiceError.conflict("devbox \(id) is destroyed; create a new devbox")
            }
        } catch let e as ServiceError {
            throw e
        } catch {
            throw storageFailure(error)
        }
        if sandbox.networkInfo(box: id) != nil {
            do {
                try await sandbox.setEgressPolicy(box: id, policy)
            } catch BoxRuntimeError.notFound {
                // The box went in between (a failed setup's teardown, a DELETE): nothing to
                // apply it to; the stored policy is what a box made later would get.
            } catch {
                logger.error("applying an egress policy failed", metadata: ["devbox": "\(id)", "error": "\(error)"])
                throw .unavailable("the policy was stored but could not be applied to the running devbox; try again")
            }
        }
        logger.info("egress policy changed", metadata: ["devbox": "\(id)", "egress": "\(policy.egress.rawValue)"])
        return normalized
    }

    /// The policies the runtime must restore at start (devbox id → policy).
    func storedEgressPolicies() async -> [String: EgressPolicy] {
        do {
            let rows = try await db.networkPolicies(inStates: DevboxStateMachine.sandboxStates)
            var out: [String: EgressPolicy] = [:]
            for row in rows {
                // Stored policies were validated on the way in.
                if let p = try? Self.egressPolicy(row.network) { out[row.id] = p }
            }
            return out
        } catch {
            logger.error("reading egress policies failed: \(error)")
            return [:]
        }
    }
}
