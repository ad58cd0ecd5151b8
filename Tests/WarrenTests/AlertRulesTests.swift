import Foundation
import Testing
import Warren
import WarrenTestSupport

/// `docs/alerts.yaml` parses, its rules fire on the series they describe (promtool's rule unit tests), and every
/// metric they name is one Warren emits.
@Suite("Alerting rules")
struct AlertRulesTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// promtool, from Debian's `prometheus` (make test installs it); the test runs without it only under CI
    /// (``needsTool(_:_:)``), where its absence is then a failure.
    static let promtoolPath = ["/usr/bin/promtool", "/usr/local/bin/promtool"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }

    static func promtool() throws -> String {
        guard let promtoolPath else { throw TestFailure("promtool is missing (apt-get install prometheus)") }
        return promtoolPath
    }

    func run(_ tool: String, _ arguments: [String]) async throws -> (status: Int32, output: String) {
        let run = try await runProcess(tool, arguments, in: Self.root)
        return (run.status, run.output + run.errors)
    }

    @Test(.needsTool(AlertRulesTests.promtoolPath != nil, "promtool (Debian's prometheus)"))
    func theRulesParseAndFireOnTheSeriesTheyDescribe() async throws {
        let promtool = try Self.promtool()
        let check = try await run(promtool, ["check", "rules", "docs/alerts.yaml"])
        #expect(check.status == 0 && check.output.contains("SUCCESS"), "\(check.output)")
        let unit = try await run(promtool, ["test", "rules", "Tests/Alerts/alerts-test.yaml"])
        #expect(unit.status == 0 && unit.output.contains("SUCCESS"), "\(unit.output)")
    }

    /// A name copied from the docs into an alert or a dashboard must exist: every `warren_…` the README and docs/ write
    /// is a metric of `WarrenMetric.all` (or a histogram's series), or one of the few names that are not metrics.
    @Test func everyMetricNameInTheDocsIsOneWarrenEmits() throws {
        let notMetrics: Set<String> = ["warren_session", "warren_sign_in"]  // the dashboard's cookies
        let known = Set(
            WarrenMetric.all.flatMap { metric in
                metric.kind == .histogram
                    ? [metric.name, metric.name + "_bucket", metric.name + "_count", metric.name + "_sum"]
                    : [metric.name]
            }
        ).union(notMetrics)
        let documents =
            try FileManager.default.contentsOfDirectory(atPath: Self.root.appendingPathComponent("docs").path)
            .filter { $0.hasSuffix(".md") }.map { "docs/\($0)" } + ["README.md"]
        #expect(documents.count > 10)
        for document in documents {
            let text = try String(contentsOf: Self.root.appendingPathComponent(document), encoding: .utf8)
            let unknown = Set(text.matches(of: /warren_[a-z_]+/).map { String($0.output) }).subtracting(known)
            #expect(unknown.isEmpty, "\(document) names metrics Warren does not emit: \(unknown.sorted())")
        }
    }

    @Test func everyMetricTheRulesNameIsOneWarrenEmits() throws {
        let rules = try String(contentsOf: Self.root.appendingPathComponent("docs/alerts.yaml"), encoding: .utf8)
        let named = Set(rules.matches(of: /warren_[a-z_]+/).map { String($0.output) })
        let emitted = Set(WarrenMetric.all.map(\.name))
        let histogramSeries = Set(
            WarrenMetric.all.filter { $0.kind == .histogram }.flatMap {
                [$0.name + "_bucket", $0.name + "_count", $0.name + "_sum"]
            })
        #expect(!named.isEmpty)
        #expect(
            named.subtracting(emitted).subtracting(histogramSeries).isEmpty,
            "unknown metrics: \(named.subtracting(emitted).subtracting(histogramSeries))")
        let documented = try String(contentsOf: Self.root.appendingPathComponent("docs/operating.md"), encoding: .utf8)
        for metric in WarrenMetric.all {
            #expect(
                documented.contains(
                    "`\(metric.name)` | \(metric.kind.rawValue) | \(metric.labels.map { "`\($0)`" }.joined(separator: ", "))"
                ),
                "docs/operating.md lists \(metric.name) with its type and labels")
        }
    }
}
