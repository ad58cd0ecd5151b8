import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Warren
import WarrenLedger

// The audit log of replays and purges: writing to it, its page and its JSON (`/api/audit`).
extension Dashboard {
    func addAuditRoutes(pages: RouterGroup<DashboardRequestContext>, api: RouterGroup<DashboardRequestContext>) {
        pages.get("audit") { request, context in try await auditPage(request, context) }
        api.get("audit") { request, context in
            try await LedgerAPI.answer(
                request, context, parse: { try LedgerAPI.listQuery(from: $0, known: ["limit", "before"]) }
            ) { list in
                ["entries": try await store.auditLog(limit: list.limit, before: list.before)]
            }
        }
    }

    /// A refusal as the audit log says it: `refused` (a viewer), or `failed: <why>`.
    static func auditOutcome(_ status: HTTPResponse.Status, _ why: String) -> String {
        status == .forbidden ? "refused" : "failed: \(why)"
    }

    /// A 429 for a viewer who had more than ``RefusalLimiter/limit`` requests refused within its window (each refusal
    /// is written to the audit log, which a loop must not fill); `nil` for an operator, or within the limit.
    func refuseRepeatedRefusals(of identity: DashboardIdentity?) async -> Refusal? {
        guard identity?.role != .operator, !(await refusals.admit(identity?.name ?? "")) else { return nil }
        return Refusal(
            status: .tooManyRequests,
            message: "Too many refused requests: only an operator may replay, purge or change a schedule.")
    }

    /// The longest target an audit entry keeps (a message id or a filter; what is longer is cut).
    static let auditTargetLimit = 512

    /// Writes a replay or a purge, whatever became of it, to the audit log and the process's log.
    func audit(
        _ action: DeadLetterAction, target: String, count: Int, outcome: String, requestID: String,
        by identity: DashboardIdentity?, logger: Logger
    ) async throws {
        try await audit(
            action.rawValue, target: target, count: count, outcome: outcome, requestID: requestID, by: identity,
            logger: logger)
    }

    /// Writes an operator's action (`replay`, `purge`, `trigger`, `pause`, `resume`), whatever became of it, to the
    /// audit log and the process's log.
    func audit(
        _ action: String, target: String, count: Int, outcome: String, requestID: String,
        by identity: DashboardIdentity?,
        logger: Logger
    ) async throws {
        // What a request asked for, NULs shown as U+FFFD (PostgreSQL's text cannot hold one), cut to its bound.
        var target = target.utf8.contains(0) ? target.replacingOccurrences(of: "\0", with: "\u{FFFD}") : target
        if target.utf8.count > Self.auditTargetLimit {
            target = String(decoding: target.utf8.prefix(Self.auditTargetLimit - 3), as: UTF8.self) + "…"
        }
        _ = try await store.recordAudit(
            AuditEntry(
                atMs: Int64((Date().timeIntervalSince1970 * 1000).rounded()), actor: identity?.name ?? "",
                role: identity?.role.rawValue ?? "",
                action: action, target: target, count: count, outcome: outcome, requestID: requestID))
        logger.notice(
            "dashboard \(action)",
            metadata: [
                "user": "\(identity?.name ?? "")", "target": "\(target)", "outcome": "\(outcome)",
                "request_id": "\(requestID)",
            ])
    }

    func auditPage(_ request: Request, _ context: DashboardRequestContext) async throws -> Response {
        let before: Int64?
        do {
            before = try LedgerAPI.listQuery(
                from: request.uri.queryParameters.map { (String($0.key), String($0.value)) }, known: ["before"]
            ).before
        } catch let error as LedgerAPI.BadRequest {
            return page(
                "Audit log", context, nav: "audit", status: .badRequest,
                content: "<h1>Audit log</h1>" + Self.errorNote(error.message))
        }
        let entries = try await store.auditLog(limit: 50, before: before)
        let rows = entries.map { entry -> HTML in
            """
            <tr><td class="nowrap">\(Format.time(entry.atMs))</td><td>\(entry.actor) <span class="hint">(\(entry.role))</span></td>\
            <td>\(entry.action)</td><td>\(entry.target)</td><td class="number">\(entry.count)</td>\
            <td\(entry.outcome == "done" ? HTML("") : HTML(" class=\"error-text\""))>\(entry.outcome)</td><td><code>\(entry.requestID)</code></td></tr>
            """
        }
        let next: HTML =
            entries.count == 50
            ? "<p class=\"pages\"><a rel=\"next\" href=\"/audit?before=\(entries.last?.id ?? 0)\">Older →</a></p>"
            : .empty
        let table = Self.table(
            "Replays and purges, newest first", ["When", "Who", "What", "Of", "Dead letters", "Outcome", "Request"],
            numeric: ["Dead letters"], rows: rows, empty: "No replay or purge yet.")
        return page("Audit log", context, nav: "audit", content: "<h1>Audit log</h1>" + table + next)
    }
}
