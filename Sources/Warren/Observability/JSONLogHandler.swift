import Foundation
import Logging

/// A swift-log handler that writes one JSON object per line: `timestamp`, `level`, `label`, `message`, `source`, and
/// every metadata field at the top level (a metadata key that collides with one of those is prefixed with
/// `metadata.`). Meant for log shippers; payloads are never part of Warren's metadata.
///
/// Metadata given as `.stringConvertible` integers, floating-point numbers and booleans are written as JSON numbers and
/// booleans, so a pipeline can aggregate them (Warren's own: `attempt`, `duration_ms`, `queue_wait_ms`, `outage_ms`,
/// …; durations carry their unit in their name); everything else is a string.
public struct JSONLogHandler: LogHandler {
    /// Where the lines go.
    public enum Output: Sendable {
        case standardOutput
        case standardError
        /// An open file descriptor the handler writes to and never closes.
        case fileDescriptor(Int32)

        var descriptor: Int32 {
            switch self {
            case .standardOutput: STDOUT_FILENO
            case .standardError: STDERR_FILENO
            case .fileDescriptor(let descriptor): descriptor
            }
        }
    }

    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    public let label: String
    public let output: Output

    public init(label: String, level: Logger.Level = .info, output: Output = .standardOutput) {
        self.label = label
        self.logLevel = level
        self.output = output
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var object: [String: Any] = [
            "timestamp": ISO8601DateFormatter.string(
                from: Date(), timeZone: .gmt, formatOptions: [.withInternetDateTime, .withFractionalSeconds]),
            "level": event.level.rawValue,
            "label": label,
            "message": "\(event.message)",
            "source": event.source,
        ]
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        for (key, value) in merged {
            let name = object[key] == nil ? key : "metadata.\(key)"
            object[name] = Self.json(value)
        }
        guard
            let data = try? JSONSerialization.data(
                withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
        else { return }
        var line = [UInt8](data)
        line.append(0x0A)
        // The whole line in as few writes as the descriptor takes (one, for a line up to PIPE_BUF on a pipe), so that
        // lines of several threads do not interleave.
        line.withUnsafeBytes { bytes in
            var written = 0
            while written < bytes.count {
                let result = write(output.descriptor, bytes.baseAddress! + written, bytes.count - written)
                if result <= 0 { if result < 0 && errno == EINTR { continue } else { return } }
                written += result
            }
        }
    }

    private static func json(_ value: Logger.MetadataValue) -> Any {
        switch value {
        case .string(let string): return string
        case .stringConvertible(let convertible):
            switch convertible {
            case let flag as Bool: return flag
            case let integer as any BinaryInteger: return NSNumber(value: Int64(clamping: integer))
            case let number as Double where number.isFinite: return number
            case let number as Float where number.isFinite: return Double(number)
            default: return convertible.description
            }
        case .array(let values): return values.map(json)
        case .dictionary(let dictionary): return dictionary.mapValues(json)
        }
    }
}
