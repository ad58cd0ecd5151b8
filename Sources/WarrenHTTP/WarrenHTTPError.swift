/// An error of the WarrenHTTP module.
public struct WarrenHTTPError: Error, Sendable, CustomStringConvertible {
    /// What went wrong; extensible.
    public struct Code: RawRepresentable, Hashable, Sendable {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }

        /// A metric of one of Warren's names is registered in another shape.
        public static let metricConflict = Code(rawValue: "metric_conflict")
        /// The server could not listen.
        public static let cannotListen = Code(rawValue: "cannot_listen")
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
