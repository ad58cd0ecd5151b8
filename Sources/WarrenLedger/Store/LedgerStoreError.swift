/// A ledger store that cannot be opened or reached, with what to change.
public struct LedgerStoreError: Error, CustomStringConvertible, Sendable {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { name }

        /// The store's URL or path cannot be used (an unknown `sslmode`, a missing `sslrootcert`).
        public static let invalidURL = Code("invalid_url")
        /// The server could not be reached, refused the connection, or its TLS did not pass the checks asked for.
        public static let cannotConnect = Code("cannot_connect")
        /// A PostgreSQL store used after it stopped running, or run a second time (``LedgerStore/run()``).
        public static let notRunning = Code("not_running")
    }

    public var code: Code
    /// What happened; never a password.
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}
