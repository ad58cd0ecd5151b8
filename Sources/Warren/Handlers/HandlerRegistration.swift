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

    /// The options of an ordered flow's handler (``HandlerRegistration/init(_:flow:options:handler:)``): a prefetch of 5,
    /// five attempts 1, 2, 4 and 8 s apart (retried in place), 30 s per attempt. Messages wait in the prefetch buffer
    /// behind a retrying one, so a partition's worst wait — prefetch × (attempts × timeout + (attempts − 1) × the
    /// longest delay), here 910 s — must stay below the broker's `consumer_timeout`
    /// (``WorkerConfiguration/consumerTimeout``).
    public static let ordered = HandlerOptions(prefetch: 5, maxConcurrentHandlers: 1)
}

/// A typed handler bound to a queue and a message type, erased so registrations of different types sit together.
public struct HandlerRegistration: Sendable {
    /// The queue consumed; for an ordered flow's registration, the flow's name (its queues are the flow's partitions).
    public let queue: String
    public let messageType: String
    public let options: HandlerOptions
    /// The ordered flow whose partitions the registration consumes, when it is one's.
    public let flow: PartitionedFlow?
    let process: @Sendable (_ body: [UInt8], _ codec: any MessageCodec, _ context: MessageContext) async throws -> Void

    /// Registers `handler` for messages of type `M` arriving on `queue`.
    public init<M: WarrenMessage>(
        _ type: M.Type, queue: String, options: HandlerOptions = HandlerOptions(),
        handler: @escaping @Sendable (M, MessageContext) async throws -> Void
    ) {
        self.queue = queue
        self.messageType = M.messageType
        self.options = options
        self.flow = nil
        self.process = Self.process(handler)
    }

    /// Registers `handler` for the messages of type `M` of an ordered flow: the worker declares the flow's exchange and
    /// partition queues, and handles each partition it holds one message at a time, in order (``PartitionedFlow``).
    ///
    /// In an ordered flow a failed attempt is retried in place, after its delay, while the partition waits (a retry
    /// through a delay queue would let the key's later messages pass it); after the last attempt the message goes to
    /// the dead letters and the partition goes on with the key's next message. ``HandlerOptions/maxConcurrentHandlers``
    /// is 1 whatever it says. A message that came back unsettled (its process died) is counted on the broker and goes
    /// to the dead letters after ``WorkerConfiguration/redeliveryLimit`` returns, without being moved behind the others.
    public init<M: PartitionedMessage>(
        _ type: M.Type, flow: PartitionedFlow, options: HandlerOptions = .ordered,
        handler: @escaping @Sendable (M, MessageContext) async throws -> Void
    ) {
        self.queue = flow.name
        self.messageType = M.messageType
        var options = options
        options.maxConcurrentHandlers = 1
        self.options = options
        self.flow = flow
        self.process = Self.process(handler)
    }

    private static func process<M: WarrenMessage>(
        _ handler: @escaping @Sendable (M, MessageContext) async throws -> Void
    ) -> @Sendable (_ body: [UInt8], _ codec: any MessageCodec, _ context: MessageContext) async throws -> Void {
        { body, codec, context in
            let message: M
            do {
                message = try codec.decode(M.self, from: body)
            } catch {
                throw UndecodableBody(decoding: M.self, from: codec.contentType, error)
            }
            try await handler(message, context)
        }
    }

    /// The queues the registration consumes: its queue, or its flow's partitions.
    var consumedQueues: [String] { flow?.queues ?? [queue] }
}
