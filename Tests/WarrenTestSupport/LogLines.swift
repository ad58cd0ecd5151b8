import Logging
import Synchronization

/// Records log lines (a worker's, for `trace_id`; a server's, for what it says), each as its metadata with its
/// `message` and `level`.
package final class LogLines: Sendable {
    private let lines = Mutex<[Logger.Metadata]>([])
    package init() {}
    package func append(_ metadata: Logger.Metadata) { lines.withLock { $0.append(metadata) } }
    package var all: [Logger.Metadata] { lines.withLock { $0 } }
}

/// A log handler that writes into ``LogLines``.
package struct CapturingHandler: LogHandler {
    package let lines: LogLines
    package var metadata: Logger.Metadata = [:]
    package var logLevel: Logger.Level = .debug
    package init(lines: LogLines) { self.lines = lines }
    package subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    package func log(event: LogEvent) {
        lines.append(
            metadata.merging(event.metadata ?? [:]) { $1 }.merging([
                "message": "\(event.message)", "level": "\(event.level)",
            ]) { $1 })
    }
}
