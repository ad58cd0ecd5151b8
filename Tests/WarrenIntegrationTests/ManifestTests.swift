import Foundation
import Testing
import WarrenTestSupport

/// The README's manifest, as a new user copies it: a package written from it, depending on this checkout by path (a
/// folder not named `warren`, as a clone often is), loads with SwiftPM — every product and package it names resolves
/// (SwiftPM's graph; the package is not compiled here, which would take minutes: `make first-day`, which CI runs,
/// builds, tests and runs one, and the docs' Swift blocks are compiled by DocSnippets).
@Suite("The README's manifest")
struct ManifestTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// The Swift block under "Add Warren to your package".
    static func readmeManifest() throws -> String {
        let readme = try String(contentsOf: root.appendingPathComponent("README.md"), encoding: .utf8)
        guard let section = readme.range(of: "## Add Warren to your package"),
            let open = readme.range(of: "```swift\n", range: section.upperBound..<readme.endIndex),
            let close = readme.range(of: "\n```", range: open.upperBound..<readme.endIndex)
        else { throw TestFailure("README.md has no manifest under 'Add Warren to your package'") }
        return String(readme[open.upperBound..<close.lowerBound])
    }

    @Test func aPackageWrittenFromTheREADMELoadsWithWarrenByPath() async throws {
        let excerpt = try Self.readmeManifest()
        let url = try #require(excerpt.firstMatch(of: /\.package\(url: "[^"]*warren\.git"[^)]*\)/)?.output)
        // As the README says for a clone: the path, and the folder's name (lowercased) as the package's.
        let identity = Self.root.lastPathComponent.lowercased()
        let manifest = excerpt.replacingOccurrences(of: String(url), with: ".package(path: \"\(Self.root.path)\")")
            .replacingOccurrences(of: "package: \"warren\"", with: "package: \"\(identity)\"")
        let package = FileManager.default.temporaryDirectory.appendingPathComponent(
            "billing-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: package) }
        let files: [String: String] = [
            "Package.swift": """
            // swift-tools-version: 6.1
            import PackageDescription

            let package = Package(
                name: "billing",
                platforms: [.macOS(.v15)],
            \(manifest)
            )
            """,
            "Sources/Billing/Billing.swift": "import Warren\nimport WarrenAMQP\nimport Logging\nimport Metrics\n",
            "Sources/billing-worker/main.swift":
                "import Billing\nimport Warren\nimport WarrenHTTP\nimport ServiceLifecycle\nimport Configuration\n",
            "Tests/BillingTests/BillingTests.swift":
                "import Billing\nimport WarrenTesting\nimport WarrenLocalBroker\nimport WarrenAMQP\n",
        ]
        for (path, text) in files {
            let file = package.appendingPathComponent(path)
            try FileManager.default.createDirectory(
                at: file.deletingLastPathComponent(), withIntermediateDirectories: true)
            try text.write(to: file, atomically: true, encoding: .utf8)
        }
        // Loading the graph is where a wrong package name fails ("unknown package 'warren' in dependencies of target").
        let shown = try await run([
            "swift", "package", "--package-path", package.path, "show-dependencies", "--format", "json",
        ])
        #expect(shown.status == 0, "\(shown.output.suffix(2_000))")
        #expect(
            shown.output.contains("\"identity\" : \"\(identity)\"")
                || shown.output.contains("\"identity\": \"\(identity)\""), "\(shown.output.prefix(500))")
        // And why the README says so: the manifest as it is, with the clone's path only, does not load.
        if identity != "warren" {
            let unchanged = excerpt.replacingOccurrences(of: String(url), with: ".package(path: \"\(Self.root.path)\")")
            try files["Package.swift"]!.replacingOccurrences(of: manifest, with: unchanged)
                .write(to: package.appendingPathComponent("Package.swift"), atomically: true, encoding: .utf8)
            let refused = try await run(["swift", "package", "--package-path", package.path, "show-dependencies"])
            #expect(
                refused.status != 0 && refused.output.contains("unknown package 'warren'"),
                "\(refused.output.suffix(1_000))")
        }
    }

    private func run(_ command: [String]) async throws -> (status: Int32, output: String) {
        let run = try await runProcess("/usr/bin/env", command)
        return (run.status, run.output + run.errors)
    }

}
