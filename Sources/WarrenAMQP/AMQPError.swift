/// An error from the AMQP client: a failure to connect, an error the broker reported with its reply code, or a
/// connection that ended.
///
/// Match on ``code``; a broker's channel or connection exception also carries ``replyCode`` (for example 404
/// `NOT_FOUND`, 406 `PRECONDITION_FAILED`, 403 `ACCESS_REFUSED`, 320 `CONNECTION_FORCED`) and ``replyText``.
/// Descriptions never contain a password.
public struct AMQPError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What went wrong, in kinds a caller can act on. An extensible set:
    /// match the codes you handle and keep a `default` for the others.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Value: String {
            case invalidURI, connectionFailed, tlsFailed, authenticationFailed, channelClosed, connectionClosed,
                connectionLost, unroutable, nacked, consumerCancelled, invalidArgument, protocolError, timeout
        }

        private let value: Value

        private init(_ value: Value) {
            self.value = value
        }

        /// The URI could not be parsed or holds a value outside its range.
        public static let invalidURI = Code(.invalidURI)
        /// No configured address accepted a TCP (or TLS) connection within the connection timeout.
        public static let connectionFailed = Code(.connectionFailed)
        /// The TLS handshake or certificate verification failed.
        public static let tlsFailed = Code(.tlsFailed)
        /// The broker refused the credentials or the virtual host.
        public static let authenticationFailed = Code(.authenticationFailed)
        /// The broker closed the channel with an exception (``replyCode`` says which); the channel is unusable.
        public static let channelClosed = Code(.channelClosed)
        /// The broker closed the connection (``replyCode`` says why), or the connection was closed by this client.
        public static let connectionClosed = Code(.connectionClosed)
        /// The socket failed or the broker stopped answering (missed heartbeats); the connection is unusable.
        public static let connectionLost = Code(.connectionLost)
        /// A `mandatory` publish could not be routed to any queue (`basic.return`).
        public static let unroutable = Code(.unroutable)
        /// The broker answered a publish with `basic.nack`: it did not take responsibility for the message.
        public static let nacked = Code(.nacked)
        /// The broker cancelled a consumer, for example because its queue was deleted.
        public static let consumerCancelled = Code(.consumerCancelled)
        /// An argument that cannot be sent (a name over 255 bytes, a channel limit reached, …).
        public static let invalidArgument = Code(.invalidArgument)
        /// A frame arrived that the protocol does not allow here.
        public static let protocolError = Code(.protocolError)
        /// The operation did not complete within its time bound.
        public static let timeout = Code(.timeout)

        public var description: String { value.rawValue }
    }

    public var code: Code
    /// AMQP reply code of a broker exception or return, when there is one.
    public var replyCode: UInt16?
    /// AMQP reply text of a broker exception or return, when there is one.
    public var replyText: String?
    /// A human-readable explanation (never containing a password).
    public var message: String

    public init(_ code: Code, replyCode: UInt16? = nil, replyText: String? = nil, message: String) {
        self.code = code
        self.replyCode = replyCode
        self.replyText = replyText
        self.message = message
    }

    public var description: String {
        var text = "AMQPError.\(code): \(message)"
        if let replyCode { text += " (reply \(replyCode)" + (replyText.map { " \($0)" } ?? "") + ")" }
        return text
    }
}
