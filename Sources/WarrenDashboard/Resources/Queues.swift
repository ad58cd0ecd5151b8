import Foundation
import HTTPTypes
import Hummingbird
import Logging
import Warren
import WarrenLedger

// Queues: each work queue's depth, consumers and the queues around it; JSON at `/api/queues`.
extension Dashboard {
    func addQueueRoutes(pages: RouterGroup<DashboardRequestContext>, api: RouterGroup<DashboardRequestContext>) {
        pages.get("queues") { _, context in try await queuesPage(context) }
        api.get("queues") { request, context in
            try JSONAnswer(["queues": try await queueOverviews()]).response(from: request, context: context)
        }
    }

    /// The ledger's queues and the watched ones, as the inspector reports them (empty without an inspector).
    func queueOverviews() async throws -> [QueueOverview] {
        guard let inspector else { return [] }
        let names = Set(try await store.queues()).union(watchedQueues).sorted()
        return await inspector.inspect(names)
    }

    func queuesPage(_ context: DashboardRequestContext) async throws -> Response {
        guard inspector != nil else {
            return page(
                "Queues", context, nav: "queues",
                content: """
                    <h1>Queues</h1><p class="empty">No broker to ask: this dashboard runs with --no-ingest and no --url.</p>
                    """)
        }
        let overviews = try await queueOverviews()
        func count(_ value: Int?) -> HTML { value.map { "\($0)" } ?? "<span class=\"hint\">missing</span>" }
        func rate(_ value: Double?) -> String { value.map { String(format: "%.1f/s", $0) } ?? "" }
        let rows = overviews.map { overview -> HTML in
            if let problem = overview.problem {
                return
                    "<tr><th scope=\"row\">\(overview.queue)</th><td colspan=\"8\" class=\"error-text\">\(problem)</td></tr>"
            }
            let work = overview.queues.first { $0.role == "work" }
            let delays = overview.queues.filter { $0.role == "delay" && $0.exists }
            let delayText =
                delays.isEmpty
                ? ""
                : "\(overview.depth("delay") ?? 0) in \(delays.count) (\(delays.compactMap { $0.delayMilliseconds.map { Format.duration($0) } }.joined(separator: ", ")))"
            let deadLetters = overview.depth("dead-letters")
            return """
                <tr><th scope="row"><a href="\(Link.to("/jobs", [("queue", overview.queue)]))">\(overview.queue)</a></th>\
                <td class="number">\(count(work?.exists == true ? work?.messages : nil))</td><td class="number">\(overview.rates.map { "\($0.unacked)" } ?? "")</td>\
                <td class="number">\(work?.exists == true ? "\(work?.consumers ?? 0)" : "")\(overview.holder.map { holder -> HTML in "<br><span class=\"hint\">held by \(holder)</span>" } ?? "")</td><td>\(delayText)</td><td class="number">\(count(overview.depth("redelivered")))</td>\
                <td class="number">\(deadLetters.map { HTML("<a href=\"\(Link.to("/failures", [("queue", overview.queue)]))\">\($0)</a>") } ?? count(nil))</td>\
                <td class="number">\(rate(overview.rates?.publishedPerSecond))</td><td class="number">\(rate(overview.rates?.ackedPerSecond))</td></tr>
                """
        }
        let table = Self.table(
            "Work queues",
            [
                "Queue", "Ready", "Unacked", "Consumers", "Waiting to retry", "Redelivered", "Dead letters",
                "Published", "Acked",
            ],
            numeric: ["Ready", "Unacked", "Consumers", "Redelivered", "Dead letters", "Published", "Acked"], rows: rows,
            empty: "No queues yet: the ledger has no jobs, and none is watched (--queue).")
        let source: HTML =
            overviews.contains(where: { $0.rates != nil })
            ? "<p class=\"hint\">Depths from AMQP; unacked counts and rates from the management API.</p>"
            : "<p class=\"hint\">Depths from AMQP (passive declares). Unacked counts and rates need the management API (--management-url).</p>"
        return page("Queues", context, nav: "queues", content: "<h1>Queues</h1>" + table + source)
    }
}
