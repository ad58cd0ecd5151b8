import Foundation
import Testing

extension Tag {
    /// Needs RabbitMQ: the shared test node, or a node of its own.
    @Tag package static var broker: Self
    /// Needs the test PostgreSQL server.
    @Tag package static var postgres: Self
    /// Needs headless Chromium and chromedriver.
    @Tag package static var browser: Self
    /// Starts a three-node RabbitMQ cluster.
    @Tag package static var cluster: Self
}

/// The services a test may start, as `WARREN_TEST_SERVICES` allows: unset or `all` for every one (what `make test`
/// runs); `none` for the fast subset that needs none (`make test-fast`); or a comma-separated list (`broker,postgres`).
/// Under CI (`CI=true`) every service is required: a test that needs one never skips, and a missing one fails it.
package enum TestService: String, CaseIterable, Sendable, CustomStringConvertible {
    case broker, postgres, browser, cluster

    package var description: String { rawValue }

    package static var underCI: Bool { ProcessInfo.processInfo.environment["CI"] == "true" }

    /// The services `WARREN_TEST_SERVICES` allows (all of them under CI).
    package static var allowed: Set<TestService> {
        let setting =
            ProcessInfo.processInfo.environment["WARREN_TEST_SERVICES"]?.trimmingCharacters(in: .whitespaces) ?? ""
        if underCI || setting.isEmpty || setting == "all" { return Set(allCases) }
        return Set(
            setting.split(separator: ",").compactMap { TestService(rawValue: $0.trimmingCharacters(in: .whitespaces)) })
    }

    /// Throws when a test reaches for a service its suite did not declare with ``needs(_:)`` and the run excludes.
    package static func require(_ service: TestService) throws {
        guard allowed.contains(service) else {
            throw TestFailure(
                "this test needs \(service), which WARREN_TEST_SERVICES excludes: give its suite .needs(.\(service))")
        }
    }
}

extension Trait where Self == ConditionTrait {
    /// Runs the suite or test only when the run allows every one of `services` (``TestService/allowed``); otherwise it
    /// is reported as skipped, with the reason. Under CI it always runs. Pair it with `.tags(…)` of the same names.
    package static func needs(_ services: TestService...) -> Self {
        let missing = services.filter { !TestService.allowed.contains($0) }
        return .enabled(
            if: missing.isEmpty,
            "needs \(missing.map(\.rawValue).joined(separator: ", ")), which WARREN_TEST_SERVICES=\(ProcessInfo.processInfo.environment["WARREN_TEST_SERVICES"] ?? "") excludes"
        )
    }

    /// Runs only when `tool` is installed, or under CI (where its absence then fails the test): a local run without
    /// it reports a skip saying what to install.
    package static func needsTool(_ installed: Bool, _ what: String) -> Self {
        .enabled(if: installed || TestService.underCI, "\(what) is missing (make deps installs it)")
    }
}
