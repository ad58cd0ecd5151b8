import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Warren
import WarrenLedger

// The page around every view, and the pieces views share (tables, badges, pagination, problem pages).
extension Dashboard {
    func page(
        _ title: String, _ context: DashboardRequestContext, nav active: String, status: HTTPResponse.Status = .ok,
        content: HTML
    ) -> Response {
        let links = [
            ("queues", "/queues", "Queues"), ("jobs", "/jobs", "Jobs"), ("failures", "/failures", "Failures"),
            ("schedules", "/schedules", "Schedules"), ("operations", "/operations", "Operations"),
            ("audit", "/audit", "Audit log"),
        ].map { key, path, label -> HTML in
            "<a href=\"\(path)\"\(key == active ? HTML(" aria-current=\"page\"") : .empty)>\(label)</a>"
        }
        let who: HTML =
            context.identity.map { identity in
                let signOut: HTML =
                    context.session.map { session in
                        """
                        <form method="post" action="/sign-out" class="inline"><input type="hidden" name="csrf_token" value="\(session.csrfToken)">\
                        <button type="submit" class="link">Sign out</button></form>
                        """
                    } ?? .empty
                return "<span class=\"who\">\(identity.name) (\(identity.role.rawValue))</span>\(signOut)"
            } ?? .empty
        let header: HTML = """
            <header><nav aria-label="Dashboard"><a class="brand" href="/jobs">Warren</a>\(links)</nav><div class="account">\(who)</div></header>
            """
        return Self.document(title: title, content: header + "<main>\(content)</main>").response(status: status)
    }

    static func document(title: String, content: HTML) -> HTML {
        """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
        <title>\(title) · Warren</title><link rel="stylesheet" href="/assets/dashboard.css"></head>
        <body>\(content)</body></html>
        """
    }

    static func badge(_ state: JobState) -> HTML {
        "<span class=\"badge \(state.rawValue)\">\(state.rawValue.replacingOccurrences(of: "_", with: " "))</span>"
    }

    /// A table of `rows` under `columns` (those in `numeric` right-aligned) with a caption for screen readers; `empty`
    /// as a note instead when there are no rows (`nil`: the table, empty).
    static func table(
        _ caption: String, _ columns: [String], numeric: Set<String> = [], rows: [HTML], empty: String? = nil
    ) -> HTML {
        if rows.isEmpty, let empty { return "<p class=\"empty\">\(empty)</p>" }
        let headers = columns.map { column -> HTML in
            "<th scope=\"col\"\(numeric.contains(column) ? HTML(" class=\"number\"") : .empty)>\(column)</th>"
        }
        return """
            <table><caption class="visually-hidden">\(caption)</caption>
            <thead><tr>\(headers)</tr></thead>
            <tbody>\(rows)</tbody></table>
            """
    }

    /// The link to the page after `cursor` of a search at `path`, its other parameters kept; nothing on the last page.
    static func nextPage(_ path: String, _ parameters: [(String, String)], after cursor: LedgerCursor?) -> HTML {
        guard let cursor else { return .empty }
        return
            "<p class=\"pages\"><a rel=\"next\" href=\"\(Link.to(path, keep(parameters, except: "after") + [("after", cursor.token)]))\">Next page →</a></p>"
    }

    static func errorNote(_ message: String) -> HTML {
        "<p class=\"error\" role=\"alert\">\(message)</p>"
    }

    static func problem(_ status: HTTPResponse.Status, _ message: String, link: String, headers: HTTPFields = [:])
        -> Response
    {
        document(
            title: status.reasonPhrase,
            content: """
                <main><h1>\(status.reasonPhrase)</h1><p class="error" role="alert">\(message)</p><p><a href="\(link)">Go on →</a></p></main>
                """
        ).response(status: status, headers: headers)
    }

    /// The parameters to carry into the next page's link.
    static func keep(_ parameters: [(String, String)], except dropped: String) -> [(String, String?)] {
        parameters.filter { $0.0 != dropped }.map { ($0.0, $0.1) }
    }

    static func keep(_ parameters: [(String, String)], only kept: Set<String>) -> [(String, String?)] {
        parameters.filter { kept.contains($0.0) }.map { ($0.0, $0.1) }
    }
}
