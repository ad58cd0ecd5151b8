import Foundation
import Testing
import Warren

/// Every metric `docs/alerts.yaml`, the README and docs/ name is one Warren emits (`AlertRulesPromtoolTests` runs
/// the rules through promtool).
@Suite("Alerting rules")
struct AlertRulesTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

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
