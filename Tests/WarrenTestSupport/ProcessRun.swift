import Foundation
import Synchronization

/// What a command run to completion said: its exit status, its standard output and its standard error.
package struct ProcessRun: Sendable, CustomStringConvertible {
    package var status: Int32
    package var output: String
    package var errors: String

    package var description: String {
        "exit \(status)\n\(output)\(errors.isEmpty ? "" : "\n--- stderr ---\n\(errors)")"
    }
}

/// Runs `executable` with `arguments` to completion, the test's environment plus `environment` (a `nil` value
/// removes a variable), in `directory`, with `input` on its standard input. No thread blocks: the exit comes through
/// the termination handler, and the output goes through files, not pipes, so a chatty command never stalls on a full
/// pipe nobody reads yet. Past `timeout`, or when the test is cancelled, the command is killed (SIGKILL).
package func runProcess(
    _ executable: String, _ arguments: [String], environment: [String: String?] = [:], in directory: URL? = nil,
    input: Data? = nil,
    timeout: Duration = .seconds(900)
) async throws -> ProcessRun {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    var merged = ProcessInfo.processInfo.environment
    for (name, value) in environment { merged[name] = value }
    process.environment = merged
    if let directory { process.currentDirectoryURL = directory }
    let folder = FileManager.default.temporaryDirectory
    let id = UUID().uuidString
    let files = ["in", "out", "err"].map { folder.appendingPathComponent("warren-test-\(id).\($0)") }
    defer { for file in files { try? FileManager.default.removeItem(at: file) } }
    _ = FileManager.default.createFile(atPath: files[0].path, contents: input ?? Data())
    for file in files.dropFirst() { _ = FileManager.default.createFile(atPath: file.path, contents: nil) }
    let handles = [
        try FileHandle(forReadingFrom: files[0]), try FileHandle(forWritingTo: files[1]),
        try FileHandle(forWritingTo: files[2]),
    ]
    defer { for handle in handles { try? handle.close() } }
    process.standardInput = handles[0]
    process.standardOutput = handles[1]
    process.standardError = handles[2]
    let exit = ProcessExit(process)
    try process.run()
    let status = await exit.status(of: process.processIdentifier, killingAfter: timeout)
    func text(_ file: URL) -> String { (try? String(contentsOf: file, encoding: .utf8)) ?? "" }
    return ProcessRun(status: status, output: text(files[1]), errors: text(files[2]))
}

/// A process's exit, awaited without blocking a thread: through its termination handler, set before it runs.
package final class ProcessExit: Sendable {
    /// The exit status once the termination handler ran.
    private final class Ended: Sendable {
        let status = Mutex<Int32?>(nil)
    }

    private let exits: AsyncStream<Int32>
    private let ended = Ended()

    /// Sets `process`'s termination handler; call before `process.run()`.
    package init(_ process: Process) {
        let (exits, exit) = AsyncStream.makeStream(of: Int32.self)
        self.exits = exits
        process.terminationHandler = { [ended] finished in
            let status = finished.terminationStatus
            ended.status.withLock { $0 = status }
            exit.yield(status)
            exit.finish()
        }
    }

    /// Its exit status, once it exited; past `timeout` (or when the waiting task is cancelled) process `pid` is
    /// killed with SIGKILL first. Returns at once when it already exited.
    package func status(of pid: Int32, killingAfter timeout: Duration) async -> Int32 {
        if let status = ended.status.withLock({ $0 }) { return status }
        let (exits, ended) = (exits, ended)
        return await withTaskGroup(of: Int32?.self) { group in
            group.addTask {
                for await code in exits { return code }
                return ended.status.withLock { $0 } ?? -1
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                if ended.status.withLock({ $0 }) == nil { kill(pid, SIGKILL) }
                return nil
            }
            for await result in group {
                if let result {
                    group.cancelAll()
                    return result
                }
            }
            return -1
        }
    }
}
