import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Warren
import WarrenLedger

/// Bulk replays and purges of the dead letters the ledger holds: a failure group from its page, a failures search from
/// that page, or any filter through the API; each a durable ``DeadLetterOperation`` whose progress has a page of its own.
extension DeadLetterOperation.Action {
    var pastTense: String { self == .replay ? "replayed" : "purged" }
}

extension Dashboard {
    func addOperationRoutes(pages: RouterGroup<DashboardRequestContext>, api: RouterGroup<DashboardRequestContext>) {
        pages.get("operations") { _, context in try await operationsPage(context) }
        pages.get("operations/new") { request, context in try await confirmation(request, context) }
        for action in [DeadLetterAction.replay, .purge] {
            pages.get("failures/:group_id/\(action.rawValue)") { request, context in
                try await confirmation(
                    request, context, action: action, group: try context.parameters.require("group_id"))
            }
        }
        pages.post("operations") { request, context in try await startFromForm(request, context) }
        pages.get("operations/:id") { _, context in try await operationPage(context) }
        api.post("operations") { request, context in try await startFromAPI(request, context) }
        api.get("operations") { request, context in
            try await LedgerAPI.answer(request, context, parse: { try LedgerAPI.listQuery(from: $0, known: ["limit"]) })
            { list in
                ["operations": try await store.operations(limit: list.limit)]
            }
        }
        api.get("operations/:id") { request, context in
            let id = try context.parameters.require("id")
            guard let operation = try await store.operation(id: id) else {
                return try APIError("not_found", "No operation \(id).").response(
                    .notFound, for: request, context: context)
            }
            return try JSONAnswer(operation).response(from: request, context: context)
        }
    }

    /// A page's buttons to replay or purge every held dead letter of `filter`, leading to its confirmation page
    /// (`confirm`'s address for each action); `describe` says how many wait, `none` what shows when none does.
    func bulkActions(
        _ filter: DeadLetterFilter, confirm: (DeadLetterAction) -> String, _ context: DashboardRequestContext,
        describe: (Int) -> String, none: HTML = .empty
    ) async throws -> HTML {
        guard runner != nil else { return .empty }
        let held = try await store.countHeldDeadLetters(matching: filter)
        guard held > 0 else { return none }
        let buttons: HTML =
            context.identity?.role == .operator
            ? """
             <a class="button" href="\(confirm(.replay))">Replay all \(held)…</a> \
            <a class="button danger" href="\(confirm(.purge))">Purge all \(held)…</a>
            """ : .empty
        return "<p class=\"actions\">\(describe(held))\(buttons)</p>"
    }

    /// `/failures/{group_id}/replay|purge` for a failure group, `/operations/new?action=replay|purge` for a failures
    /// search (`queue`, `since`, `until`; `24h` resolved now, so what runs is what was confirmed): how many, and the form
    /// that starts it.
    private func confirmation(
        _ request: Request, _ context: DashboardRequestContext, action: DeadLetterAction? = nil, group: String? = nil
    ) async throws -> Response {
        let parameters = request.uri.queryParameters.map { (key: String($0.key), value: String($0.value)) }
        let back = group.map { "/failures/\(Link.encode($0))" } ?? "/failures"
        guard context.identity?.role == .operator else {
            return Self.problem(.forbidden, "Only an operator may replay or purge dead letters.", link: back)
        }
        guard runner != nil else {
            return Self.problem(
                .serviceUnavailable, "This needs a broker: this dashboard runs without one.", link: back)
        }
        let action = action ?? (parameters.last { $0.key == "action" }?.value == "purge" ? .purge : .replay)
        var filter: DeadLetterFilter
        do {
            let query = try LedgerAPI.failureQuery(from: parameters.filter { $0.key != "action" })
            filter = DeadLetterFilter(queue: query.queue, sinceMs: query.sinceMs, untilMs: query.untilMs)
            filter.groupID = group
        } catch let error as LedgerAPI.BadRequest {
            return Self.problem(.badRequest, error.message, link: back)
        }
        let held = try await store.countHeldDeadLetters(matching: filter)
        guard held > 0 else {
            return Self.problem(.notFound, "No dead letter the ledger holds matches \(filter.summary).", link: back)
        }
        let csrf =
            context.session.map { HTML("<input type=\"hidden\" name=\"csrf_token\" value=\"\($0.csrfToken)\">") }
            ?? .empty
        let fields: [(String, String?)] = [
            ("action", action.rawValue), ("group_id", filter.groupID), ("queue", filter.queue),
            ("since_ms", filter.sinceMs.map { String($0) }), ("until_ms", filter.untilMs.map { String($0) }),
        ]
        let hidden = fields.compactMap { name, value in
            value.map { HTML("<input type=\"hidden\" name=\"\(name)\" value=\"\($0)\">") }
        }
        let what: HTML =
            if let group, filter == DeadLetterFilter(groupID: group) { "group <code>\(group)</code>" } else {
                "\(filter.summary)"
            }
        let explanation =
            action == .replay
            ? "Each goes back to the queue it failed on, with its message id and a fresh attempt count, oldest first; the operation's page shows how far it got, and it carries on after a restart."
            : "They are deleted for good; the ledger keeps their records, marked purged."
        return page(
            "\(action.rawValue.capitalized) \(held) dead letters", context, nav: "failures",
            content: """
                <h1>\(action.rawValue.capitalized) all \(held) dead letters of \(what)?</h1>
                <p>\(explanation) This is written to the audit log.</p>
                <form method="post" action="/operations">\(csrf)\(hidden)
                <button type="submit"\(action == .purge ? HTML(" class=\"danger\"") : .empty)>\(action == .replay ? "Replay all \(held)" : "Delete all \(held) for good")</button> \
                <a href="\(back)">Cancel</a>
                </form>
                """)
    }

    private struct OperationForm: Decodable {
        var action: String?
        var groupID: String?
        var queue: String?
        var sinceMs: Int64?
        var untilMs: Int64?
        var csrfToken: String?
        enum CodingKeys: String, CodingKey {
            case action, queue
            case groupID = "group_id"
            case sinceMs = "since_ms"
            case untilMs = "until_ms"
            case csrfToken = "csrf_token"
        }
    }

    private func startFromForm(_ request: Request, _ context: DashboardRequestContext) async throws -> Response {
        let form = try await Self.form(OperationForm.self, request)
        if let refusal = Self.refuseWithoutCSRF(sent: form.csrfToken, request, context) { return refusal }
        func given(_ text: String?) -> String? { text.flatMap { $0.isEmpty ? nil : $0 } }
        let filter = DeadLetterFilter(
            groupID: given(form.groupID), queue: given(form.queue), sinceMs: form.sinceMs, untilMs: form.untilMs)
        switch try await start(
            form.action == "purge" ? .purge : .replay, filter, as: context.identity, logger: context.logger)
        {
        case .success(let operation):
            return Response(status: .seeOther, headers: [.location: "/operations/\(Link.encode(operation.id))"])
        case .failure(let refusal):
            return Self.problem(
                refusal.status, refusal.message,
                link: filter.groupID.map { "/failures/\(Link.encode($0))" } ?? "/failures")
        }
    }

    /// `POST /api/operations` with `{"action": "replay" | "purge", "filter": {"group_id", "queue", "message_id",
    /// "since_ms", "until_ms"}}` → 202 with the operation and `Location: /api/operations/{id}`.
    private func startFromAPI(_ request: Request, _ context: DashboardRequestContext) async throws -> Response {
        struct Body: Decodable {
            var action: DeadLetterOperation.Action
            var filter: DeadLetterFilter?
        }
        var request = request
        let bytes = try await request.collectBody(upTo: 64 * 1024)
        if context.session != nil {
            let sent = request.headers[HTTPField.Name("X-CSRF-Token")!] ?? ""
            guard let session = context.session, ConstantTime.equal(Array(sent.utf8), Array(session.csrfToken.utf8))
            else {
                return try APIError("forbidden", "A signed-in browser sends its CSRF token in X-CSRF-Token.")
                    .response(.forbidden, for: request, context: context)
            }
        }
        let body: Body
        do {
            body = try JSONDecoder().decode(Body.self, from: Data(buffer: bytes))
        } catch {
            return try APIError(
                "bad_request",
                "Send {\"action\": \"replay\" or \"purge\", \"filter\": {\"group_id\", \"queue\", \"message_id\", \"since_ms\", \"until_ms\"}}."
            ).response(.badRequest, for: request, context: context)
        }
        switch try await start(
            body.action, body.filter ?? DeadLetterFilter(), as: context.identity, logger: context.logger)
        {
        case .success(let operation):
            return try JSONAnswer(operation).response(
                .accepted, headers: [.location: "/api/operations/\(Link.encode(operation.id))"], for: request,
                context: context)
        case .failure(let refusal):
            return try APIError(Self.errorCode(refusal.status, otherwise: "not_started"), refusal.message)
                .response(refusal.status, for: request, context: context)
        }
    }

    struct Refusal: Error {
        var status: HTTPResponse.Status
        var message: String
    }
}

extension Dashboard {
    /// The `error` of a JSON refusal: `forbidden`, `bad_request`, `too_many_requests`, or `otherwise`.
    static func errorCode(_ status: HTTPResponse.Status, otherwise: String) -> String {
        switch status {
        case .forbidden: "forbidden"
        case .badRequest: "bad_request"
        case .tooManyRequests: "too_many_requests"
        default: otherwise
        }
    }
}

extension DeadLetterFilter {
    /// What no dead letter can match in the filter (a message id of more than 1,024 bytes, a group id of more than 64, a
    /// queue name of more than 255, AMQP's bound; a NUL character, which no store can search for); `nil` when nothing.
    var sizeProblem: String? {
        if [messageID, groupID, queue].contains(where: { $0?.utf8.contains(0) == true }) {
            return "A filter's text must not contain NUL characters."
        }
        if let messageID, messageID.utf8.count > 1_024 {
            return "message_id is longer than any message id (1,024 bytes)."
        }
        if let groupID, groupID.utf8.count > 64 { return "group_id is longer than any failure group's id (64 bytes)." }
        if let queue, queue.utf8.count > 255 { return "queue is longer than any queue name (255 bytes)." }
        return nil
    }
}

extension Dashboard {
    /// Records an operation on what `filter` selects and runs it in the background; writes the request to the audit
    /// log whatever becomes of it.
    private func start(
        _ action: DeadLetterAction, _ filter: DeadLetterFilter, as identity: DashboardIdentity?, logger: Logger
    ) async throws -> Result<DeadLetterOperation, Refusal> {
        if let refusal = await refuseRepeatedRefusals(of: identity) { return .failure(refusal) }
        let requestID = "dashboard-\(UUID().uuidString.lowercased())"
        let result: Result<DeadLetterOperation, Refusal>
        if let problem = filter.sizeProblem {
            result = .failure(Refusal(status: .badRequest, message: problem))
        } else if identity?.role != .operator {
            result = .failure(
                Refusal(
                    status: .forbidden,
                    message: "Only an operator may \(action.rawValue): \(identity?.name ?? "this sign-in") is a viewer."
                ))
        } else if let runner {
            let operation = try await runner.start(
                action, filter: filter, actor: identity?.name ?? "", role: identity?.role.rawValue ?? "", id: requestID)
            if operation.total == 0 {
                try await store.finishOperation(
                    id: operation.id, status: .done, error: nil, nowMs: operation.createdAtMs)
                result = .failure(
                    Refusal(status: .notFound, message: "No dead letter the ledger holds matches \(filter.summary)."))
            } else {
                // Run now by the runner's service (which also resumes it after a restart).
                runner.submit(operation.id)
                result = .success(operation)
            }
        } else {
            result = .failure(
                Refusal(
                    status: .serviceUnavailable,
                    message: "This needs a broker and a ledger that holds the dead letters."))
        }
        let (count, outcome): (Int, String) =
            switch result {
            case .success(let operation): (operation.total, "started")
            case .failure(let refusal): (0, Self.auditOutcome(refusal.status, refusal.message))
            }
        try await audit(
            action, target: filter.summary, count: count, outcome: outcome, requestID: requestID, by: identity,
            logger: logger)
        return result
    }

    private func operationsPage(_ context: DashboardRequestContext) async throws -> Response {
        let operations = try await store.operations(limit: 100)
        let rows = operations.map { operation -> HTML in
            """
            <tr><td class="nowrap">\(Format.time(operation.createdAtMs))</td>\
            <td><a href="/operations/\(Link.encode(operation.id))">\(operation.action.rawValue)</a></td><td>\(operation.filter.summary)</td>\
            <td>\(operation.actor)</td><td>\(Self.statusText(operation))</td>\
            <td class="number">\(operation.settled) of \(operation.total)</td></tr>
            """
        }
        let table = Self.table(
            "Replays and purges of the dead letters the ledger holds, newest first",
            ["Started", "Action", "Of", "Who", "Status", "Settled"],
            numeric: ["Settled"], rows: rows, empty: "No operation yet.")
        return page("Operations", context, nav: "operations", content: "<h1>Operations</h1>" + table)
    }

    private func operationPage(_ context: DashboardRequestContext) async throws -> Response {
        let id = try context.parameters.require("id")
        guard let operation = try await store.operation(id: id) else {
            return page(
                "Operation not found", context, nav: "operations", status: .notFound,
                content: """
                    <h1>Operation not found</h1><p>No operation <code>\(id)</code>.</p>
                    """)
        }
        let running = operation.status == .running
        let content: HTML = """
            <h1>\(operation.action.rawValue.capitalized) <code>\(operation.id)</code></h1>
            <p><progress max="\(max(operation.total, 1))" value="\(operation.settled)">\(operation.settled) of \(operation.total)</progress> \
            <strong>\(operation.settled)</strong> of \(operation.total) \(operation.action == .replay ? "replayed" : "purged")\
            \(running ? HTML(" <span class=\"hint\">(this page refreshes itself)</span>") : .empty)</p>
            <dl class="facts">
            <dt>Status</dt><dd>\(Self.statusText(operation))</dd>
            <dt>Of</dt><dd>\(operation.filter.summary)\(operation.filter.groupID.map { HTML(" (<a href=\"/failures/\(Link.encode($0))\">the group</a>)") } ?? .empty)</dd>
            <dt>Who</dt><dd>\(operation.actor) (\(operation.role))</dd>
            <dt>Started</dt><dd>\(Format.time(operation.createdAtMs))</dd><dt>Last progress</dt><dd>\(Format.time(operation.updatedAtMs))</dd>
            \(operation.error.map { HTML("<dt>Error</dt><dd class=\"error-text\">\($0)</dd>") } ?? .empty)
            </dl>
            <p class="hint">The copies it publishes carry <code>x-warren-replay-id: \(operation.id)</code>.</p>
            """
        var response = page("Operation \(operation.id)", context, nav: "operations", content: content)
        if running { response.headers[HTTPField.Name("Refresh")!] = "2" }
        return response
    }

    private static func statusText(_ operation: DeadLetterOperation) -> HTML {
        switch operation.status {
        case .running: "<span class=\"badge running\">running</span>"
        case .done: "<span class=\"badge succeeded\">done</span>"
        case .failed: "<span class=\"badge dead_lettered\">failed</span>"
        }
    }
}
