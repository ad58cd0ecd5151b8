import Foundation

/// What a command run to completion said: its exit status, its standard output and its standard error.
package struct ProcessRun: Sendable, CustomStringConvertible {
    package var status: Int32
    package var output: String
    package var errors: String

    package var description: String { "exit \(status)\n\(output)\(errors.isEmpty ? "" : "\n--- stderr ---\n\(errors)")" }
}

/// Runs `executable` with `arguments` to completion, the test's environment plus `environment` (a `nil` value
/// removes a variable), in `directory`, with `input` on its standard input. No thread blocks: the exit comes through
/// the termination handler, and the output goes through files, not pipes, so a chatty command never stalls on a full
/// pipe nobody reads yet.
package func runProcess(
    _ executable: String, _ arguments: [String], environment: [String: String?] = [:], in directory: URL? = nil, input: Data? = nil
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
    let handles = [try FileHandle(forReadingFrom: files[0]), try FileHandle(forWritingTo: files[1]), try FileHandle(forWritingTo: files[2])]
    defer { for handle in handles { try? handle.close() } }
    process.standardInput = handles[0]
    process.standardOutput = handles[1]
    process.standardError = handles[2]
    let status: Int32 = try await withCheckedThrowingContinuation { continuation in
        process.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
        do { try process.run() } catch {
            process.terminationHandler = nil
            continuation.resume(throwing: error)
        }
    }
    func text(_ file: URL) -> String { (try? String(contentsOf: file, encoding: .utf8)) ?? "" }
    return ProcessRun(status: status, output: text(files[1]), errors: text(files[2]))
}
