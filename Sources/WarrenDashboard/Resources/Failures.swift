import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Warren
import WarrenLedger

// Failures: dead letters grouped by cause, and a group's dead letters; JSON at `/api/failures`.
extension Dashboard {
    func addFailureRoutes(pages: RouterGroup<DashboardRequestContext>, api: RouterGroup<DashboardRequestContext>) {
        pages.get("failures") { request, context in try await failuresPage(request, context) }
        pages.get("failures/:group_id") { request, context in try await groupPage(request, context) }
        LedgerAPI(store: store).addFailureRoutes(to: api)
    }

    func failuresPage(_ request: Request, _ context: DashboardRequestContext) async throws -> Response {
        let parameters = request.uri.queryParameters.map { (String($0.key), String($0.value)) }
        func value(_ name: String) -> String { parameters.last(where: { $0.0 == name })?.1 ?? "" }
        let form: HTML = """
            <h1>Failures</h1>
            <p class="lead">Dead letters grouped by cause: type, reason, and the error with its numbers and ids masked.</p>
            <form class="search" method="get" action="/failures" role="search">
            <div><label for="queue">Queue</label><input id="queue" name="queue" value="\(value("queue"))"></div>
            <div><label for="since">Since <span class="hint">(24h, 7d or a time)</span></label><input id="since" name="since" value="\(value("since"))"></div>
            <div><label for="until">Until</label><input id="until" name="until" value="\(value("until"))"></div>
            <div><button type="submit">Show</button></div>
            </form>
            """
        let query: FailureGroupQuery
        do {
            query = try LedgerAPI.failureQuery(from: parameters)
        } catch let error as LedgerAPI.BadRequest {
            return page(
                "Failures", context, nav: "failures", status: .badRequest, content: form + Self.errorNote(error.message)
            )
        }
        let groups = try await store.failureGroups(matching: query)
        let rows = groups.map { group -> HTML in
            let groupLink = Link.to(
                "/failures/\(Link.encode(group.groupID))", Self.keep(parameters, only: ["queue", "since", "until"]))
            return """
                <tr><td class="number"><a href="\(groupLink)">\(group.count)</a></td><td>\(group.type)</td><td>\(group.reason)</td>\
                <td class="error-text"><a href="\(groupLink)">\(group.error.isEmpty ? "(no error text)" : group.error)</a></td>\
                <td>\(Format.time(group.firstAtMs))</td><td>\(Format.time(group.lastAtMs))</td>\
                <td><a href="/dead-letters/\(Link.encode(group.sampleMessageID))"><code>\(group.sampleMessageID)</code></a></td></tr>
                """
        }
        let table = Self.table(
            "Failure groups, most recently seen first",
            ["Dead letters", "Type", "Reason", "Error", "First seen", "Last seen", "Sample"],
            rows: rows, empty: "No dead letters in this range.")
        let actions = try await bulkActions(
            DeadLetterFilter(queue: query.queue, sinceMs: query.sinceMs, untilMs: query.untilMs),
            confirm: {
                Link.to(
                    "/operations/new",
                    [("action", $0.rawValue)] + Self.keep(parameters, only: ["queue", "since", "until"]))
            }, context,
            describe: { "\($0) dead letters of this search wait in the ledger." })
        return page("Failures", context, nav: "failures", content: form + actions + table)
    }

    func groupPage(_ request: Request, _ context: DashboardRequestContext) async throws -> Response {
        let group = try context.parameters.require("group_id")
        let parameters = request.uri.queryParameters.map { (String($0.key), String($0.value)) }.filter {
            $0.0 != "group"
        }
        let query: DeadLetterQuery
        do {
            query = try LedgerAPI.deadLetterQuery(from: parameters + [("group", group)])
        } catch let error as LedgerAPI.BadRequest {
            return page(
                "Failure group", context, nav: "failures", status: .badRequest, content: Self.errorNote(error.message))
        }
        let found = try await store.deadLetters(matching: query)
        guard let first = found.deadLetters.first else {
            return page(
                "Failure group", context, nav: "failures", status: query.after == nil ? .notFound : .ok,
                content: """
                    <h1>Failure group <code>\(group)</code></h1><p class="empty">No dead letters of this group in this range.</p>
                    """)
        }
        let fingerprint = FailureFingerprint(type: first.type, reason: first.reason, error: first.error)
        let rows = found.deadLetters.map { letter -> HTML in
            """
            <tr><td>\(Format.time(letter.atMs))</td><td><a href="/dead-letters/\(Link.encode(letter.messageID))"><code>\(letter.messageID)</code></a></td>\
            <td>\(letter.queue)</td><td class="error-text">\(letter.error)</td><td>\(Self.whereNow(letter))</td></tr>
            """
        }
        let content: HTML = """
            <h1>Failure group <code>\(group)</code></h1>
            <dl class="facts">
            <dt>Type</dt><dd>\(first.type)</dd><dt>Reason</dt><dd>\(first.reason)</dd>
            <dt>Error</dt><dd class="error-text">\(fingerprint.maskedError)</dd>
            </dl>
            \(try await bulkActions(
                DeadLetterFilter(groupID: group), confirm: { "/failures/\(Link.encode(group))/\($0.rawValue)" }, context,
                describe: { "\($0) of them wait in the ledger." }, none: "<p class=\"hint\">None of this group's dead letters waits in the ledger.</p>"))
            \(Self.table("The group's dead letters, most recent first", ["Dead-lettered", "Message id", "Queue", "Error", "Now"], rows: rows))
            \(Self.nextPage("/failures/\(Link.encode(group))", parameters, after: found.next))
            """
        return page("Failure group", context, nav: "failures", content: content)
    }
}
