import Foundation

/// One of the package's executables, started for a test with its output in a file, stopped with SIGTERM.
package final class LaunchedProcess {
    package let process: Process
    package let output: URL
    private let exit: ProcessExit
    /// Its output as it was when ``stop(signal:)`` removed the file.
    private var logAtStop: String?

    /// The folder of the package's executables: the test bundle sits next to them in the build folder.
    package static var binDirectory: URL {
        var url = Bundle.main.bundleURL
        while !FileManager.default.fileExists(atPath: url.appendingPathComponent("warren").path), url.path != "/" {
            url.deleteLastPathComponent()
        }
        return url
    }

    /// Starts `tool` (one of the package's executables, or an absolute path) with `arguments` and the test's
    /// environment plus `environment`; stdout and stderr go to one file.
    package init(_ tool: String, _ arguments: [String], environment: [String: String] = [:]) throws {
        process = Process()
        process.executableURL =
            tool.hasPrefix("/") ? URL(fileURLWithPath: tool) : Self.binDirectory.appendingPathComponent(tool)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        output = FileManager.default.temporaryDirectory.appendingPathComponent(
            "\((tool as NSString).lastPathComponent)-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: output.path, contents: nil)
        let handle = try FileHandle(forWritingTo: output)
        process.standardOutput = handle
        process.standardError = handle
        exit = ProcessExit(process)
        try process.run()
    }

    /// What it wrote so far; after ``stop(signal:)``, all it wrote.
    package var log: String { logAtStop ?? (try? String(contentsOf: output, encoding: .utf8)) ?? "" }

    /// The port of its `listening on http://host:port` line (or of the first line that starts with `prefix`, the port
    /// being the digits at its end), once it printed one: a server started on port 0 says which port it bound.
    /// - Throws: ``TestFailure`` when it exits or prints none within `timeout`.
    package func listeningPort(
        lineStartingWith prefix: String = "listening on http://", timeout: Duration = .seconds(60)
    ) async throws -> Int {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            // Whole lines only (the last may still be written), and a real port.
            let isDigit: (Character) -> Bool = { ("0"..."9").contains($0) }
            if let line = log.components(separatedBy: "\n").dropLast().first(where: { $0.hasPrefix(prefix) }),
                let port = Int(String(line.reversed().drop(while: { !isDigit($0) }).prefix(while: isDigit).reversed())),
                port > 0
            {
                return port
            }
            guard process.isRunning else {
                throw TestFailure("\(process.executableURL?.lastPathComponent ?? "") exited: \(log)")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TestFailure("no '\(prefix)' line within \(timeout): \(log)")
    }

    /// Waits (at most `timeout`, then stops it) for it to exit by itself; returns its exit status. Its output stays
    /// readable in ``log``.
    package func waitForExit(timeout: Duration = .seconds(60)) async -> Int32 {
        await exit.status(of: process.processIdentifier, killingAfter: timeout)
    }

    /// Sends `signal` (SIGTERM unless told) and returns its exit status. Its output file is removed; ``log`` keeps
    /// what it held.
    @discardableResult
    package func stop(signal: Int32 = SIGTERM) async -> Int32 {
        if process.isRunning { kill(process.processIdentifier, signal) }
        let status = await exit.status(of: process.processIdentifier, killingAfter: .seconds(120))
        logAtStop = log
        try? FileManager.default.removeItem(at: output)
        return status
    }
}
