/// An error of the Warren framework itself (handler errors are the application's own).
public struct WarrenError: Error, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// A queue or exchange exists on the broker with settings that contradict what the registrations need.
        case topologyConflict
        /// The worker has no enabled registration to run.
        case nothingToConsume
        /// A configuration value is missing or out of range.
        case invalidConfiguration
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "WarrenError.\(code.rawValue): \(message)" }
}
