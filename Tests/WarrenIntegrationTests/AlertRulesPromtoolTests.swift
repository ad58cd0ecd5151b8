import Foundation
import Testing
import WarrenTestSupport

/// `docs/alerts.yaml` parses, and its rules fire on the series they describe (promtool's rule unit tests).
@Suite("Alerting rules under promtool")
struct AlertRulesPromtoolTests {
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

    @Test(.needsTool(AlertRulesPromtoolTests.promtoolPath != nil, "promtool (Debian's prometheus)"))
    func theRulesParseAndFireOnTheSeriesTheyDescribe() async throws {
        let promtool = try Self.promtool()
        let check = try await run(promtool, ["check", "rules", "docs/alerts.yaml"])
        #expect(check.status == 0 && check.output.contains("SUCCESS"), "\(check.output)")
        let unit = try await run(promtool, ["test", "rules", "Tests/Alerts/alerts-test.yaml"])
        #expect(unit.status == 0 && unit.output.contains("SUCCESS"), "\(unit.output)")
    }
}
