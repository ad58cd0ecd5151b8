import Foundation
import Warren

/// The worker's part: makes a month's sales report, a CSV with a row per day, in `workSeconds`. No orders were taken
/// before 2000: a report for an earlier month fails for good (dead-lettered, and the API answers 500 with why).
struct ReportMaker: Sendable {
    let reports: ReportFiles
    let workSeconds: Double
    static let retry = RetryPolicy(maxAttempts: 3, backoff: .explicit([.seconds(1), .seconds(5)]))

    var registration: HandlerRegistration {
        HandlerRegistration(
            ReportRequested.self, queue: ReportRequested.queue,
            options: HandlerOptions(
                prefetch: 4, maxConcurrentHandlers: 2,
                retry: Self.retry, timeout: .seconds(300))
        ) { request, context in
            try await make(request)
            context.logger.info(
                "report written", metadata: ["report_id": "\(request.reportID)", "month": "\(request.month)"])
        }
    }

    func make(_ request: ReportRequested) async throws {
        // The id names the file: a message (which anyone with access to the queue may publish) must not choose a path.
        guard ReportFiles.isReportID(request.reportID) else { throw Reject("not a report id (a lowercase UUID)") }
        guard let year = Int(request.month.prefix(4)), let month = Int(request.month.suffix(2)),
            (1...12).contains(month)
        else {
            throw Reject("not a month: \(request.month)")
        }
        guard year >= 2000 else {
            throw Reject("no orders were recorded before 2000-01; nothing to report for \(request.month)")
        }
        try await Task.sleep(for: .milliseconds(Int(workSeconds * 1000)))
        let days = Self.days(year: year, month: month)
        var csv = "date,orders,revenue_cents\n"
        for day in 1...days {
            // Made-up but stable figures: the same month always gives the same report.
            let seed = (year * 10_000 + month * 100 + day) &* 2_654_435_761 % 1_000
            let orders = 20 + seed % 80
            csv += String(format: "%04d-%02d-%02d,%d,%d\n", year, month, day, orders, orders * (1_500 + seed))
        }
        try reports.write(csv, for: request.reportID)
    }

    static func days(year: Int, month: Int) -> Int {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let date = calendar.date(from: DateComponents(year: year, month: month, day: 1))!
        return calendar.range(of: .day, in: .month, for: date)!.count
    }
}
