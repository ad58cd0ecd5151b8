import Logging
import Synchronization

/// Something that happened to a connection, delivered by ``AMQPConnection/events()``.
public enum AMQPConnectionEvent: Sendable, Equatable {
    /// The broker stopped reading from this connection (a resource alarm: memory or disk). Publishes wait in the
    /// socket buffer until it unblocks.
    case blocked(reason: String)
    case unblocked
    /// The connection ended: closed by the client or the broker, or lost. The stream finishes after this event.
    case closed(AMQPError)
}

/// A connection to a RabbitMQ node, served by a dedicated OS thread that owns the librabbitmq state.
///
/// Every method is safe to call from any task; none blocks a thread of Swift's cooperative pool. Blocking
/// librabbitmq calls happen only on the connection's own thread, which the async methods reach through a command
/// queue.
///
/// ```swift
/// let connection = try await AMQPConnection.connect(to: AMQPEndpoint(uri: "amqp://guest:guest@127.0.0.1:5672/"))
/// let channel = try await connection.openChannel()
/// try await channel.queueDeclare("jobs", durable: true)
/// ```
///
/// A connection is not reopened by itself: when it ends (see ``events()`` and ``waitUntilClosed()``) open a new one.
public final class AMQPConnection: Sendable, CustomStringConvertible {
    let core: ConnectionCore

    private init(core: ConnectionCore) {
        self.core = core
    }

    deinit {
        // A connection nobody holds any more must not keep its thread and socket: ask the thread to close.
        core.submit(.close(nil))
    }

    /// Connects to the first of `endpoints` that accepts, trying them in order.
    ///
    /// - Parameters:
    ///   - endpoints: one or more nodes, e.g. the nodes of a cluster.
    ///   - connectionName: shown in the management UI and `rabbitmqctl list_connections`.
    ///   - logger: receives connection-level events (connected, lost, blocked). Never passwords.
    /// - Throws: ``AMQPError`` with ``AMQPError/Code/connectionFailed`` (nothing reachable within each endpoint's
    ///   connection timeout), ``AMQPError/Code/authenticationFailed``, ``AMQPError/Code/tlsFailed`` or
    ///   ``AMQPError/Code/invalidArgument``; with several endpoints, the message lists each one's failure.
    public static func connect(
        to endpoints: [AMQPEndpoint],
        connectionName: String = "warren",
        logger: Logger = Logger(label: "warren.amqp")
    ) async throws -> AMQPConnection {
        guard !endpoints.isEmpty else { throw AMQPError(.invalidArgument, message: "no endpoint to connect to") }
        let core = ConnectionCore(endpoints: endpoints, connectionName: connectionName, logger: logger)
        try await core.start()
        return AMQPConnection(core: core)
    }

    /// Connects to one endpoint. See ``connect(to:connectionName:logger:)-(_:_:_)``.
    public static func connect(
        to endpoint: AMQPEndpoint,
        connectionName: String = "warren",
        logger: Logger = Logger(label: "warren.amqp")
    ) async throws -> AMQPConnection {
        try await connect(to: [endpoint], connectionName: connectionName, logger: logger)
    }

    /// Opens a new channel.
    /// - Throws: ``AMQPError`` when the connection is closed or every channel number is taken.
    public func openChannel() async throws -> AMQPChannel {
        let handle = try await withUnsafeThrowingContinuation { continuation in
            core.submit(.openChannel(continuation))
        }
        return AMQPChannel(connection: self, handle: handle)
    }

    /// Closes every channel and the connection (`connection.close`), then stops the I/O thread. Operations still
    /// pending fail with ``AMQPError/Code/connectionClosed``; consumers end. Returns once the socket is closed;
    /// calling it again, or on a connection that is already gone, returns at once.
    public func close() async {
        await withUnsafeContinuation { continuation in
            core.submit(.close(continuation))
        }
    }

    /// Suspends until the connection has ended, for whatever reason.
    public func waitUntilClosed() async {
        await withUnsafeContinuation { continuation in
            let alreadyClosed = core.publicState.withLock { state in
                if state.closeReason != nil { return true }
                state.closedWaiters.append(continuation)
                return false
            }
            if alreadyClosed { continuation.resume() }
        }
    }

    /// A stream of this connection's events, from now on. Each call returns a new, independent stream; it finishes
    /// after ``AMQPConnectionEvent/closed(_:)``.
    public func events() -> AsyncStream<AMQPConnectionEvent> {
        let (stream, continuation) = AsyncStream.makeStream(of: AMQPConnectionEvent.self)
        let closed: AMQPError? = core.publicState.withLock { state in
            if let reason = state.closeReason { return reason }
            let id = state.nextListener
            state.nextListener += 1
            state.listeners[id] = continuation
            return nil
        }
        if let closed {
            continuation.yield(.closed(closed))
            continuation.finish()
        }
        return stream
    }

    /// Whether the connection is open (it has not been closed or lost).
    public var isOpen: Bool { core.publicState.withLock { $0.isOpen } }

    /// Whether the broker has blocked this connection (`connection.blocked`).
    public var isBlocked: Bool { core.publicState.withLock { $0.isBlocked } }

    /// Why the connection ended, once it has.
    public var closeReason: AMQPError? { core.publicState.withLock { $0.closeReason } }

    /// The endpoint the connection was established to.
    public var endpoint: AMQPEndpoint { core.connectedEndpoint! }

    /// The broker's `server-properties` (product, version, capabilities, cluster name).
    public var serverProperties: AMQPTable { core.serverProperties }

    public var description: String { "AMQPConnection(\(core.connectionName) → \(endpoint))" }
}
