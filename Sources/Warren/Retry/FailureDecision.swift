import WarrenAMQP

/// Why a message failed, as the runtime saw it.
enum HandlingFailure: Sendable {
    /// The handler threw.
    case handlerError(any Error)
    /// The handler did not finish within its timeout (a transient failure).
    case timedOut(Duration)
    /// The body could not be decoded into the registered type.
    case undecodable(String)
    /// No registration handles the message's `type` (or it has none).
    case unknownType(String?)
    /// No codec reads the message's `content_type`.
    case unsupportedContentType(String)
    /// The body has a `content_encoding` (e.g. `gzip`) that Warren does not undo; only none or `identity` is read.
    case unsupportedContentEncoding(String)
    /// The body is larger than the configured maximum.
    case tooLarge(bytes: Int, limit: Int)
    /// The message came back unsettled more often than the worker's redelivery limit allows.
    case redeliveryLimit(returns: Int, limit: Int)
}

/// What to do with a failed message. Pure: ``decide(failure:attempt:policy:jitterSample:)`` has no side effects, so
/// every path is a plain unit test.
enum FailureDecision: Sendable, Equatable {
    /// Publish a copy to the delay queue for `delay`; it comes back as attempt `nextAttempt`.
    case retry(delay: Duration, nextAttempt: Int)
    /// Publish a copy to the dead letters with this reason.
    case deadLetter(DeadLetterReason)

    static func decide(
        failure: HandlingFailure, attempt: Int, policy: RetryPolicy, jitterSample: Double = 0.5
    ) -> FailureDecision {
        let kind: DeadLetterReason.Kind
        switch failure {
        case .undecodable: kind = .undecodable
        case .unknownType: kind = .unknownType
        case .unsupportedContentType: kind = .unsupportedContentType
        case .unsupportedContentEncoding: kind = .unsupportedContentEncoding
        case .tooLarge: kind = .tooLarge
        case .redeliveryLimit: kind = .redeliveryLimit
        case .handlerError(let error) where error is Reject: kind = .rejected
        case .handlerError(let error) where policy.isPermanent(error): kind = .permanentError
        case .handlerError, .timedOut:
            guard attempt >= policy.maxAttempts else {
                var delay = policy.delay(afterAttempt: attempt, jitterSample: jitterSample)
                if case .handlerError(let error as RetryAfter) = failure { delay = error.delay }
                return .retry(delay: delay, nextAttempt: attempt + 1)
            }
            kind = .retriesExhausted
        }
        // One text per failure: the dead letter's detail is what the log line and the worker's events say
        // (``HandlingFailure/summary``); the reason's kind and the attempts are apart from it.
        return .deadLetter(DeadLetterReason(kind: kind, detail: failure.summary))
    }
}

/// Why a message is in the dead letters; `kind` is machine-readable (header `x-warren-reason`).
public struct DeadLetterReason: Sendable, Equatable {
    /// The kind of reason, as its header spells it. An extensible set: reading dead letters that a newer Warren wrote
    /// gives kinds this one does not name; match the ones you handle and keep a `default`.
    public struct Kind: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public var rawValue: String

        public init(rawValue: String) {
            self.rawValue = rawValue
        }

        public static let retriesExhausted = Kind(rawValue: "retries-exhausted")
        public static let rejected = Kind(rawValue: "rejected")
        public static let permanentError = Kind(rawValue: "permanent-error")
        public static let undecodable = Kind(rawValue: "undecodable")
        public static let unknownType = Kind(rawValue: "unknown-type")
        public static let unsupportedContentType = Kind(rawValue: "unsupported-content-type")
        public static let unsupportedContentEncoding = Kind(rawValue: "unsupported-content-encoding")
        public static let tooLarge = Kind(rawValue: "too-large")
        /// Delivered more than ``WorkerConfiguration/redeliveryLimit`` times without a settlement: a handler that
        /// crashes its process, or a worker that keeps dying while holding it.
        public static let redeliveryLimit = Kind(rawValue: "redelivery-limit")

        public var description: String { rawValue }
    }

    /// The most characters of a detail (or an error message) a header carries.
    static let longestDetail = 2000

    public var kind: Kind
    public var detail: String

    public init(kind: Kind, detail: String) {
        self.kind = kind
        self.detail = detail
    }
}

extension HandlingFailure {
    /// The failure's one text: the log line's `error`, the worker's events' `error`, and the dead letter's
    /// `x-warren-error` (``DeadLetterReason/detail``) all say this, so the ledger's timeline, a failure group and a dead
    /// letter read the same. A handler's error as `<Type>: <description>` (`Reject: 550 no such mailbox`).
    var summary: String {
        switch self {
        case .handlerError(let error): return "\(type(of: error)): \(error)"
        case .timedOut(let limit): return "timed out after \(limit)"
        case .undecodable(let detail): return "undecodable: \(detail)"
        case .unknownType(let type): return type.map { "no handler for type '\($0)'" } ?? "the message has no type"
        case .unsupportedContentType(let type): return "no codec for content type '\(type)'"
        case .unsupportedContentEncoding(let encoding):
            return "content encoding '\(encoding)' is not supported (only none or identity)"
        case .tooLarge(let bytes, let limit): return "body of \(bytes) bytes exceeds the limit of \(limit)"
        case .redeliveryLimit(let returns, let limit):
            return
                "delivered again \(returns) times without being settled (limit \(limit)): its handler may crash the process"
        }
    }

    /// The error's type name, for the `x-warren-error-type` header.
    var errorType: String {
        switch self {
        case .handlerError(let error): return String(reflecting: type(of: error))
        case .timedOut: return "Warren.HandlerTimeout"
        case .undecodable: return "Warren.Undecodable"
        case .unknownType: return "Warren.UnknownType"
        case .unsupportedContentType: return "Warren.UnsupportedContentType"
        case .unsupportedContentEncoding: return "Warren.UnsupportedContentEncoding"
        case .tooLarge: return "Warren.TooLarge"
        case .redeliveryLimit: return "Warren.RedeliveryLimit"
        }
    }
}
