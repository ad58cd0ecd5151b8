import Logging

/// Options of one handler registration.
public struct HandlerOptions: Sendable {
    /// Unacknowledged deliveries the broker may send the queue's consumer. A queue with several registrations uses
    /// the largest value among them.
    public var prefetch: UInt16
    /// Handlers running at once on the queue (1 keeps messages in order). The largest value among the queue's
    /// registrations applies.
    public var maxConcurrentHandlers: Int
    public var retry: RetryPolicy
    /// How long a handler may run before it is cancelled and the attempt counts as a transient failure; `nil` for no
    /// limit.
    public var timeout: Duration?
    /// A disabled registration is not consumed (its messages wait in the queue, or go to the dead letters as an
    /// unknown type if another registration consumes the queue).
    public var enabled: Bool
    /// When set, a message whose id the store has already recorded for this queue and type is acknowledged without
    /// running the handler; ids are recorded after a successful handler run. Messages without an id are always handled.
    public var idempotency: (any IdempotencyStore)?

    public init(
        prefetch: UInt16 = 20, maxConcurrentHandlers: Int = 4, retry: RetryPolicy = .default,
        timeout: Duration? = .seconds(30), enabled: Bool = true, idempotency: (any IdempotencyStore)? = nil
    ) {
        precondition(maxConcurrentHandlers >= 1, "at least one handler must be allowed to run")
        self.prefetch = prefetch
        self.maxConcurrentHandlers = maxConcurrentHandlers
        self.retry = retry
        self.timeout = timeout
        self.enabled = enabled
        self.idempotency = idempotency
    }
}

/// A typed handler bound to a queue and a message type, erased so registrations of different types sit together.
public struct HandlerRegistration: Sendable {
    public let queue: String
    public let messageType: String
    public let options: HandlerOptions
    let process: @Sendable (_ body: [UInt8], _ codec: any MessageCodec, _ context: MessageContext) async throws -> Void

    /// Registers `handler` for messages of type `M` arriving on `queue`.
    public init<M: WarrenMessage>(
        _ type: M.Type, queue: String, options: HandlerOptions = HandlerOptions(),
        handler: @escaping @Sendable (M, MessageContext) async throws -> Void
    ) {
        self.queue = queue
        self.messageType = M.messageType
        self.options = options
        self.process = { body, codec, context in
            let message: M
            do {
                message = try codec.decode(M.self, from: body)
            } catch {
                throw UndecodableBody(decoding: M.self, from: codec.contentType, error)
            }
            try await handler(message, context)
        }
    }
}
