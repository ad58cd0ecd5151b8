/// An error of the Warren framework itself (handler errors are the application's own).
public struct WarrenError: Error, Sendable, CustomStringConvertible {
    /// What went wrong. An extensible set: match the codes you handle and keep a `default` for the others.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: String {
            case topologyConflict, nothingToConsume, invalidConfiguration, noPublisher, notConsuming, settlementRefused
            case leadershipLost
        }

        private let value: Value

        private init(_ value: Value) {
            self.value = value
        }

        /// A queue or exchange exists on the broker with settings that contradict what the registrations need.
        public static let topologyConflict = Code(.topologyConflict)
        /// The worker has no enabled registration to run.
        public static let nothingToConsume = Code(.nothingToConsume)
        /// A configuration value is missing or out of range.
        public static let invalidConfiguration = Code(.invalidConfiguration)
        /// A ``MessageContext`` was made without a publisher, so the handler cannot publish from it.
        public static let noPublisher = Code(.noPublisher)
        /// The worker is not consuming: it stopped, or did not start consuming in the time given.
        public static let notConsuming = Code(.notConsuming)
        /// The transport refused to settle a delivery (its tag is unknown: already settled, or its consumer closed).
        public static let settlementRefused = Code(.settlementRefused)
        /// This process's leadership ended (the broker dropped its connection, or it resigned) before what it did as
        /// leader was confirmed. A publish refused because the term had already ended did not go out; one whose
        /// confirm was lost with the connection may or may not have reached a queue.
        public static let leadershipLost = Code(.leadershipLost)

        public var description: String { value.rawValue }
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "WarrenError.\(code): \(message)" }
}
