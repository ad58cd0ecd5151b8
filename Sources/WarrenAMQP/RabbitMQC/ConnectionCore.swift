import CRabbitMQ
import CRabbitMQShims
import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A request from a Swift task to the connection's I/O thread.
enum IOCommand: Sendable {
    case openChannel(UnsafeContinuation<ChannelShared, any Error>)
    // Commands name their channel by its shared state, not its number: a number is reused once its channel
    // closes, and an ack or publish meant for the old channel must never reach the new one.
    case method(channel: ChannelShared, ChannelMethod, UnsafeContinuation<MethodReply, any Error>)
    case consume(channel: ChannelShared, ChannelMethod, ConsumerSink, UnsafeContinuation<MethodReply, any Error>)
    case publish(channel: ChannelShared, OutboundMessage, PublishWaiter)
    case settle(channel: ChannelShared, Settlement)
    case close(UnsafeContinuation<Void, Never>?)
}

enum Settlement: Sendable {
    case ack(deliveryTag: UInt64, multiple: Bool)
    case nack(deliveryTag: UInt64, multiple: Bool, requeue: Bool)
    case reject(deliveryTag: UInt64, requeue: Bool)
}

/// Who waits for a publish: one task, one slot of a batch, or nobody.
enum PublishWaiter: Sendable {
    case none
    case single(UnsafeContinuation<Void, any Error>)
    case batch(PublishBatch, index: Int)

    func complete(_ result: Result<Void, AMQPError>) {
        switch self {
        case .none: break
        case .single(let continuation): continuation.resume(with: result.mapError { $0 as any Error })
        case .batch(let batch, let index): batch.complete(index, result)
        }
    }
}

/// Collects the outcomes of a batch of publishes and resumes its caller once, when all are known.
final class PublishBatch: Sendable {
    private struct State {
        var results: [Result<Void, AMQPError>?]
        var remaining: Int
        var continuation: UnsafeContinuation<[Result<Void, AMQPError>], Never>?
    }

    private let state: Mutex<State>

    init(count: Int) {
        state = Mutex(State(results: Array(repeating: nil, count: count), remaining: count))
    }

    func wait() async -> [Result<Void, AMQPError>] {
        await withUnsafeContinuation { continuation in
            let done: [Result<Void, AMQPError>]? = state.withLock { state in
                if state.remaining == 0 { return state.results.map { $0! } }
                state.continuation = continuation
                return nil
            }
            if let done { continuation.resume(returning: done) }
        }
    }

    func complete(_ index: Int, _ result: Result<Void, AMQPError>) {
        let finished: (UnsafeContinuation<[Result<Void, AMQPError>], Never>, [Result<Void, AMQPError>])? =
            state.withLock { state in
                guard state.results[index] == nil else { return nil }
                state.results[index] = result
                state.remaining -= 1
                guard state.remaining == 0, let continuation = state.continuation else { return nil }
                state.continuation = nil
                return (continuation, state.results.map { $0! })
            }
        if let (continuation, results) = finished { continuation.resume(returning: results) }
    }
}

/// A message to publish, in Swift values.
public struct AMQPOutboundMessage: Sendable {
    public var body: [UInt8]
    public var exchange: String
    public var routingKey: String
    /// When set, a message no queue receives is returned and its publish fails with ``AMQPError/Code/unroutable``
    /// (on a channel in confirm mode).
    public var mandatory: Bool
    public var properties: AMQPProperties

    public init(
        body: [UInt8], exchange: String = "", routingKey: String, mandatory: Bool = false,
        properties: AMQPProperties = AMQPProperties()
    ) {
        self.body = body
        self.exchange = exchange
        self.routingKey = routingKey
        self.mandatory = mandatory
        self.properties = properties
    }
}

typealias OutboundMessage = AMQPOutboundMessage

/// Channel state the façade reads without going through the I/O thread; also the channel's identity.
final class ChannelShared: Sendable {
    let id: UInt16
    private let closedError = Mutex<AMQPError?>(nil)
    /// The prefetch count last set with `basic.qos` (0: none, unlimited).
    let prefetch = Atomic<UInt16>(0)

    /// Contiguous acks are held until this many (a quarter of the prefetch, at most 64) or
    /// ``ConnectionCore/ackBatchDelay``.
    var ackBatch: Int { Self.ackBatch(prefetch: prefetch.load(ordering: .relaxed)) }

    /// How many plain acks may wait for the I/O thread's next pass before one wakes it (see
    /// ``ConnectionCore/Inbox/enqueue(_:lazyLimit:)``): a batch. `nil` (every ack wakes it) when the prefetch window is
    /// too narrow for a held ack never to leave the consumer without deliveries (with a prefetch of 1 every message
    /// waits for the previous ack).
    var lazyAckLimit: Int? {
        let prefetch = prefetch.load(ordering: .relaxed)
        return prefetch == 0 || prefetch >= 8 ? Self.ackBatch(prefetch: prefetch) : nil
    }

    private static func ackBatch(prefetch: UInt16) -> Int {
        prefetch == 0 ? 64 : max(1, min(64, Int(prefetch) / 4))
    }

    init(id: UInt16) {
        self.id = id
    }

    var closeReason: AMQPError? { closedError.withLock { $0 } }

    func markClosed(_ error: AMQPError) {
        closedError.withLock { if $0 == nil { $0 = error } }
    }
}

/// Owns one librabbitmq connection and the OS thread that alone may touch it.
///
/// Tasks talk to the thread through ``submit(_:)``: a command queue guarded by a mutex, plus a self-pipe that wakes
/// the thread out of `poll` on the socket. All other state is confined to the thread.
final class ConnectionCore: @unchecked Sendable {
    // @unchecked Sendable: `inbox`, `events` and `publicState` are Mutex-protected; every other stored property
    // (the librabbitmq connection state and the channel table) is read and written only by the I/O thread, which is
    // the only code path that runs `run()` and the methods it calls.

    struct Inbox {
        private(set) var commands: [IOCommand] = []
        var sleeping = false
        /// The thread sleeps at most ``ConnectionCore/shortPollMilliseconds``: a lazy command need not wake it.
        var sleepingBriefly = false
        /// Lazy commands queued since the thread last took the commands.
        private(set) var lazyCommands = 0
        var wakePending = false
        var accepting = true

        /// Queues `command`; returns whether the caller must wake the thread (at most once per sleep).
        ///
        /// A lazy command (a plain ack: `lazyLimit` is not `nil`) does not wake a thread that sleeps briefly anyway
        /// (it does while deliveries are unsettled): it is picked up within ``ConnectionCore/shortPollMilliseconds``,
        /// together with its neighbours. Once `lazyLimit` lazy commands wait, it wakes the thread all the same: a
        /// consumer that acked that many may have used up its prefetch window, and the broker sends nothing more until
        /// those acks arrive.
        mutating func enqueue(_ command: IOCommand, lazyLimit: Int?) -> Bool {
            commands.append(command)
            if lazyLimit != nil { lazyCommands += 1 }
            guard sleeping, !wakePending else { return false }
            if let lazyLimit, sleepingBriefly, lazyCommands < lazyLimit { return false }
            wakePending = true
            return true
        }

        /// What the thread is to execute now, in the order it was queued.
        mutating func take() -> [IOCommand] {
            defer {
                commands.removeAll(keepingCapacity: true)
                lazyCommands = 0
            }
            return commands
        }
    }

    struct PublicState {
        var isOpen = false
        var isBlocked = false
        var closeReason: AMQPError?
        var listeners: [UInt64: AsyncStream<AMQPConnectionEvent>.Continuation] = [:]
        var nextListener: UInt64 = 0
        var closedWaiters: [UnsafeContinuation<Void, Never>] = []
    }

    let endpoints: [AMQPEndpoint]
    let connectionName: String
    let logger: Logger
    private let inbox = Mutex(Inbox())
    let publicState = Mutex(PublicState())
    private let wakeup = Wakeup()

    // I/O thread only.
    private var connection: amqp_connection_state_t?
    private var channels: [UInt16: ChannelIO] = [:]
    private var channelMax: UInt16 = 2047
    private var pollTimeoutMilliseconds: Int32 = 1000
    private var running = true
    private var closeWaiters: [UnsafeContinuation<Void, Never>] = []
    private var lastConfirmExpiry = ContinuousClock.now
    /// While the broker blocks the connection, publishes wait here instead of filling the socket (and stalling this
    /// thread in a send), and go out in order once it unblocks.
    private var blocked = false
    private var channelsWithPendingAcks: Set<UInt16> = []
    /// Consumers that got deliveries during this read pass while their task waited; woken once at its end.
    private var sinksToWake: [ConsumerSink] = []
    private let names = NameCache()
    /// C memory for the method or publish being sent; reset after each.
    private let arena = CArena()
    /// When the last delivery that needs an ack arrived: within ``busyWindow`` of it the thread sleeps only briefly.
    private var lastDeliveryAt = ContinuousClock.now - .seconds(1)
    /// Deliveries to consumers read since the thread last slept.
    private var deliveriesSinceSleep = 0
    private var pausedPublishes: [(ChannelShared, OutboundMessage, PublishWaiter)] = []
    private(set) var connectedEndpoint: AMQPEndpoint?
    private(set) var serverProperties: AMQPTable = [:]

    init(endpoints: [AMQPEndpoint], connectionName: String, logger: Logger) {
        self.endpoints = endpoints
        self.connectionName = connectionName
        self.logger = logger
    }

    // MARK: - Starting

    /// Starts the I/O thread, which connects to the first endpoint that accepts and then serves commands.
    func start() async throws {
        try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<Void, any Error>) in
            let thread = Thread { [self] in
                switch self.establish() {
                case .success:
                    continuation.resume()
                    self.run()
                case .failure(let error):
                    self.finishConnection(error, notify: false)
                    continuation.resume(throwing: error)
                }
            }
            thread.name = "warren-amqp-io"
            thread.stackSize = 8 << 20
            thread.start()
        }
    }

    private func establish() -> Result<Void, AMQPError> {
        var failures: [String] = []
        var lastError = AMQPError(.connectionFailed, message: "no endpoint configured")
        for endpoint in endpoints {
            switch open(endpoint) {
            case .success:
                connectedEndpoint = endpoint
                publicState.withLock { $0.isOpen = true }
                logger.info("connected", metadata: ["amqp.endpoint": "\(endpoint)", "amqp.connection": "\(connectionName)"])
                return .success(())
            case .failure(let error):
                failures.append("\(endpoint): \(error.message)")
                lastError = error
                logger.debug("connection attempt failed", metadata: ["amqp.endpoint": "\(endpoint)", "error": "\(error)"])
            }
        }
        if failures.count > 1 {
            lastError.message = "no endpoint accepted the connection: " + failures.joined(separator: "; ")
        }
        return .failure(lastError)
    }

    private func open(_ endpoint: AMQPEndpoint) -> Result<Void, AMQPError> {
        guard let state = amqp_new_connection() else {
            return .failure(AMQPError(.connectionFailed, message: "librabbitmq could not allocate a connection"))
        }
        var keep = false
        defer { if !keep { amqp_destroy_connection(state) } }

        var timeout = timeval(endpoint.connectionTimeout)
        let socket: OpaquePointer?
        if let tls = endpoint.tls {
            if let sni = tls.serverNameIndication, sni != endpoint.host {
                return .failure(AMQPError(
                    .invalidArgument,
                    message: "server_name_indication '\(sni)' differs from the host; librabbitmq 0.11 always sends the host name"))
            }
            socket = amqp_ssl_socket_new(state)
            guard let socket else { return .failure(AMQPError(.tlsFailed, message: "could not create a TLS socket")) }
            amqp_ssl_socket_set_verify_peer(socket, tls.verifyPeer ? 1 : 0)
            amqp_ssl_socket_set_verify_hostname(socket, tls.verifyPeer ? 1 : 0)
            if let ca = tls.caCertificatePath {
                let status = amqp_ssl_socket_set_cacert(socket, ca)
                if status != AMQP_STATUS_OK.rawValue {
                    return .failure(AMQPError(.tlsFailed, message: "cannot load CA file \(ca): \(statusText(status))"))
                }
            }
            if let cert = tls.certificatePath, let key = tls.keyPath {
                let status = amqp_ssl_socket_set_key(socket, cert, key)
                if status != AMQP_STATUS_OK.rawValue {
                    return .failure(AMQPError(.tlsFailed, message: "cannot load client certificate \(cert) / key \(key): \(statusText(status))"))
                }
            } else if (tls.certificatePath == nil) != (tls.keyPath == nil) {
                return .failure(AMQPError(.invalidArgument, message: "a client certificate needs both certfile and keyfile"))
            }
        } else {
            socket = amqp_tcp_socket_new(state)
        }
        guard let socket else { return .failure(AMQPError(.connectionFailed, message: "could not create a socket")) }

        let openStatus = amqp_socket_open_noblock(socket, endpoint.host, Int32(endpoint.port), &timeout)
        if openStatus != AMQP_STATUS_OK.rawValue {
            let code: AMQPError.Code = isTLSStatus(openStatus) ? .tlsFailed : .connectionFailed
            return .failure(AMQPError(code, message: "cannot connect to \(endpoint.host):\(endpoint.port): \(statusText(openStatus))"))
        }
        amqp_set_handshake_timeout(state, &timeout)
        amqp_set_rpc_timeout(state, &timeout)

        let arena = CArena()
        var clientProperties = arena.table([
            "product": "Warren",
            "platform": "Swift",
            "connection_name": .string(connectionName),
            "capabilities": [
                "consumer_cancel_notify": true,
                "connection.blocked": true,
                "publisher_confirms": true,
                "basic.nack": true,
                "per_consumer_qos": true,
                "authentication_failure_close": true,
            ],
        ])
        let heartbeatSeconds = endpoint.heartbeat.map { Int32(max(1, $0.components.seconds)) } ?? 0
        let reply = warren_amqp_login_plain(
            state, endpoint.virtualHost, Int32(endpoint.channelMax), Int32(endpoint.frameMax), heartbeatSeconds,
            &clientProperties, endpoint.username, endpoint.password)
        if let error = loginError(reply, endpoint: endpoint) { return .failure(error) }

        connection = state
        keep = true
        let negotiatedChannelMax = amqp_get_channel_max(state)
        channelMax = negotiatedChannelMax > 0 ? UInt16(clamping: negotiatedChannelMax) : 65535
        let heartbeat = amqp_get_heartbeat(state)
        pollTimeoutMilliseconds = heartbeat > 0 ? min(1000, max(50, heartbeat * 1000 / 4)) : 1000
        if let properties = amqp_get_server_properties(state) { serverProperties = AMQPTable(properties.pointee) }
        return .success(())
    }

    private func loginError(_ reply: amqp_rpc_reply_t, endpoint: AMQPEndpoint) -> AMQPError? {
        switch reply.reply_type {
        case AMQP_RESPONSE_NORMAL:
            return nil
        case AMQP_RESPONSE_SERVER_EXCEPTION where reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD:
            let close = reply.reply.decoded.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
            let code = close.reply_code
            let text = close.reply_text.string
            let kind: AMQPError.Code = (code == 403 || code == 530) ? .authenticationFailed : .connectionClosed
            let why = code == 530 ? "vhost '\(endpoint.virtualHost)' is not available to user '\(endpoint.username)'"
                : code == 403 ? "user '\(endpoint.username)' was refused (wrong credentials or no access to vhost '\(endpoint.virtualHost)')"
                : "the broker closed the connection during the handshake"
            return AMQPError(kind, replyCode: code, replyText: text, message: why)
        case AMQP_RESPONSE_LIBRARY_EXCEPTION:
            let status = reply.library_error
            let code: AMQPError.Code = isTLSStatus(status) ? .tlsFailed : .connectionFailed
            return AMQPError(code, message: "AMQP handshake with \(endpoint.host):\(endpoint.port) failed: \(statusText(status))")
        default:
            return AMQPError(.connectionFailed, message: "AMQP handshake with \(endpoint.host):\(endpoint.port) failed")
        }
    }

    // MARK: - Commands from tasks

    /// Queues a command for the I/O thread and wakes it when it sleeps (a lazy one, a plain ack, only in the cases
    /// ``Inbox/enqueue(_:lazyLimit:)`` describes); returns false when the connection no longer accepts commands.
    @discardableResult
    func submit(_ command: IOCommand, lazyLimit: Int? = nil) -> Bool {
        let (accepted, wake) = inbox.withLock { inbox -> (Bool, Bool) in
            guard inbox.accepting else { return (false, false) }
            return (true, inbox.enqueue(command, lazyLimit: lazyLimit))
        }
        if wake { wakeup.signal() }
        if !accepted { rejectCommand(command) }
        return accepted
    }

    private func rejectCommand(_ command: IOCommand) {
        let error = publicState.withLock { $0.closeReason } ?? AMQPError(.connectionClosed, message: "the connection is closed")
        fail(command, with: error)
    }

    private func fail(_ command: IOCommand, with error: AMQPError) {
        switch command {
        case .openChannel(let continuation): continuation.resume(throwing: error)
        case .method(_, _, let continuation): continuation.resume(throwing: error)
        case .consume(_, _, let sink, let continuation):
            sink.finish(error)
            continuation.resume(throwing: error)
        case .publish(_, _, let waiter): waiter.complete(.failure(error))
        case .settle: break
        case .close(let continuation): continuation?.resume()
        }
    }

    // MARK: - The I/O loop

    private func run() {
        var descriptors = [
            pollfd(fd: amqp_get_sockfd(connection), events: Int16(POLLIN), revents: 0),
            pollfd(fd: wakeup.readDescriptor, events: Int16(POLLIN), revents: 0),
        ]
        var quiet = false
        while running {
            let commands = inbox.withLock { $0.take() }
            for command in commands where running { execute(command) }
            guard running else { break }
            flushAcks(quiet: quiet)
            quiet = false
            guard running else { break }
            let drained = readFrames(limit: 2048)
            guard running else { break }
            expireConfirms()
            // A pass that read everything the socket held need not be followed by one that finds it empty (two more
            // system calls per burst) before the thread sleeps: poll returns at once if more came meanwhile.
            if commands.isEmpty && drained {
                // Held acks bound the sleep; so do unsettled deliveries while the connection is busy, since their acks
                // come without a wake-up. A connection idle for longer (a slow handler) sleeps long and is woken.
                let busy = ContinuousClock.now - lastDeliveryAt < Self.busyWindow
                let briefly = !channelsWithPendingAcks.isEmpty || (busy && channels.values.contains { $0.hasUnsettledDeliveries })
                let sleep = inbox.withLock { inbox -> Bool in
                    guard inbox.commands.isEmpty else { return false }
                    inbox.sleeping = true
                    inbox.sleepingBriefly = briefly
                    return true
                }
                if sleep {
                    descriptors[0].revents = 0
                    descriptors[1].revents = 0
                    let ready = poll(&descriptors, 2, briefly ? min(pollTimeoutMilliseconds, Self.shortPollMilliseconds) : pollTimeoutMilliseconds)
                    quiet = ready == 0
                    if quiet && channels.values.contains(where: \.hasFullWindow) { IOStatistics.count(IOStatistics.stalls) }
                    inbox.withLock {
                        $0.sleeping = false
                        $0.sleepingBriefly = false
                        $0.wakePending = false
                    }
                    if descriptors[1].revents != 0 { wakeup.drain() }
                    if descriptors[0].revents != 0 && gathersDeliveries { usleep(Self.gatherMicroseconds) }
                    deliveriesSinceSleep = 0
                }
            }
        }
        // Whoever stopped the loop already failed what was pending; stop accepting and fail late arrivals.
        let late = inbox.withLock { inbox in
            inbox.accepting = false
            return inbox.take()
        }
        let reason = publicState.withLock { $0.closeReason } ?? AMQPError(.connectionClosed, message: "the connection is closed")
        for command in late { fail(command, with: reason) }
        if let connection {
            amqp_destroy_connection(connection)
            self.connection = nil
        }
        for waiter in closeWaiters { waiter.resume() }
        closeWaiters.removeAll()
    }

    /// Whether to let more deliveries arrive before reading (see ``gatherMicroseconds``): they stream in (the passes
    /// since the last sleep brought several) and no consumer's prefetch window is half used (else the broker may soon
    /// wait for acks, and reading at once lets them out sooner).
    private var gathersDeliveries: Bool {
        Self.gathers(deliveriesSinceSleep: deliveriesSinceSleep, anyWindowHalfFull: channels.values.contains(where: \.hasHalfFullWindow))
    }

    /// See ``gathersDeliveries``.
    static func gathers(deliveriesSinceSleep: Int, anyWindowHalfFull: Bool) -> Bool {
        deliveriesSinceSleep >= gatherAfterDeliveries && !anyWindowHalfFull
    }

    /// Fails the publishes whose confirm is overdue (checked at most every 100 ms, and at least once per poll timeout).
    private func expireConfirms() {
        let now = ContinuousClock.now
        guard now - lastConfirmExpiry >= .milliseconds(100) else { return }
        lastConfirmExpiry = now
        for channel in channels.values where channel.confirmTimeout != nil && (channel.confirms?.outstanding ?? 0) > 0 {
            let expired = channel.confirms?.expire { record in record.deadline.map { $0 <= now } ?? false } ?? []
            for record in expired {
                record.waiter.complete(.failure(AMQPError(
                    .timeout,
                    message: "the broker did not confirm the publish within \(channel.confirmTimeout!); it may or may not have been enqueued")))
            }
        }
    }

    /// Reads and dispatches the frames that are available without blocking, at most `limit`; returns whether it read
    /// all of them (librabbitmq holds no complete frame and the socket nothing more). Also lets librabbitmq send a
    /// heartbeat when one is due and notice missed ones.
    private func readFrames(limit: Int) -> Bool {
        guard let connection else { return true }
        var zero = timeval(tv_sec: 0, tv_usec: 0)
        var frame = amqp_frame_t()
        var count = 0
        var drained = false
        while count < limit && running {
            let status = amqp_simple_wait_frame_noblock(connection, &frame, &zero)
            if status == AMQP_STATUS_TIMEOUT.rawValue {
                drained = true
                break
            }
            if status != AMQP_STATUS_OK.rawValue {
                let code: AMQPError.Code = .connectionLost
                let why = status == AMQP_STATUS_HEARTBEAT_TIMEOUT.rawValue
                    ? "the broker missed its heartbeats" : "reading from the broker failed: \(statusText(status))"
                connectionFailed(AMQPError(code, message: why))
                return true
            }
            count += 1
            dispatch(frame)
        }
        if running { amqp_maybe_release_buffers(connection) }
        for sink in sinksToWake { sink.wake() }
        sinksToWake.removeAll(keepingCapacity: true)
        return drained
    }

    private func dispatch(_ frame: amqp_frame_t) {
        let channelID = frame.channel
        switch Int32(frame.frame_type) {
        case AMQP_FRAME_METHOD:
            if channelID == 0 {
                handleConnectionMethod(frame.payload.method)
            } else if let channel = channels[channelID] {
                handleChannelMethod(frame.payload.method, on: channel)
            }
        case AMQP_FRAME_HEADER:
            guard let channel = channels[channelID] else { return }
            let properties = frame.payload.properties.decoded
                .map { AMQPProperties($0.assumingMemoryBound(to: amqp_basic_properties_t.self).pointee, names: names) }
                ?? AMQPProperties()
            contentOutcome(channel.assembler.header(bodySize: frame.payload.properties.body_size, properties: properties), on: channel)
        case AMQP_FRAME_BODY:
            guard let channel = channels[channelID] else { return }
            let fragment = frame.payload.body_fragment
            let outcome = channel.assembler.body(UnsafeRawBufferPointer(start: fragment.bytes, count: fragment.len))
            contentOutcome(outcome, on: channel)
        default:
            break  // heartbeats are handled inside librabbitmq
        }
    }

    private func handleConnectionMethod(_ method: amqp_method_t) {
        switch method.id {
        case AMQP_CONNECTION_CLOSE_METHOD:
            let close = method.decoded.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
            var ok = amqp_connection_close_ok_t(dummy: 0)
            _ = amqp_send_method(connection, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok)
            connectionFailed(AMQPError(
                .connectionClosed, replyCode: close.reply_code, replyText: close.reply_text.string,
                message: "the broker closed the connection"))
        case AMQP_CONNECTION_BLOCKED_METHOD:
            let frame = method.decoded.assumingMemoryBound(to: amqp_connection_blocked_t.self).pointee
            let reason = frame.reason.string
            logger.warning("broker blocked the connection; publishing paused", metadata: ["reason": "\(reason)"])
            blocked = true
            emit(.blocked(reason: reason)) { $0.isBlocked = true }
        case AMQP_CONNECTION_UNBLOCKED_METHOD:
            logger.info("broker unblocked the connection; publishing resumed", metadata: ["paused_publishes": "\(pausedPublishes.count)"])
            blocked = false
            emit(.unblocked) { $0.isBlocked = false }
            let paused = pausedPublishes
            pausedPublishes.removeAll()
            for (target, message, waiter) in paused where running {
                guard let channel = usableChannel(target, failing: { waiter.complete(.failure($0)) }) else { continue }
                publish(message, on: channel, waiter: waiter)
            }
        default:
            logger.debug("ignored connection method", metadata: ["method": "\(method.id)"])
        }
    }

    private func handleChannelMethod(_ method: amqp_method_t, on channel: ChannelIO) {
        let decoded = method.decoded
        switch method.id {
        case AMQP_BASIC_DELIVER_METHOD:
            let d = decoded!.assumingMemoryBound(to: amqp_basic_deliver_t.self).pointee
            contentOutcome(channel.assembler.begin(.deliver(
                consumerTag: names.string(d.consumer_tag), deliveryTag: d.delivery_tag, redelivered: d.redelivered != 0,
                exchange: names.string(d.exchange), routingKey: names.string(d.routing_key))), on: channel)
        case AMQP_BASIC_ACK_METHOD:
            let ack = decoded!.assumingMemoryBound(to: amqp_basic_ack_t.self).pointee
            confirm(on: channel, deliveryTag: ack.delivery_tag, multiple: ack.multiple != 0, nacked: false)
        case AMQP_BASIC_NACK_METHOD:
            let nack = decoded!.assumingMemoryBound(to: amqp_basic_nack_t.self).pointee
            confirm(on: channel, deliveryTag: nack.delivery_tag, multiple: nack.multiple != 0, nacked: true)
        case AMQP_BASIC_RETURN_METHOD:
            let r = decoded!.assumingMemoryBound(to: amqp_basic_return_t.self).pointee
            contentOutcome(channel.assembler.begin(.returned(
                replyCode: r.reply_code, replyText: r.reply_text.string,
                exchange: r.exchange.string, routingKey: r.routing_key.string)), on: channel)
        case AMQP_BASIC_GET_OK_METHOD:
            let g = decoded!.assumingMemoryBound(to: amqp_basic_get_ok_t.self).pointee
            contentOutcome(channel.assembler.begin(.getOk(
                deliveryTag: g.delivery_tag, redelivered: g.redelivered != 0, exchange: g.exchange.string,
                routingKey: g.routing_key.string, messageCount: g.message_count)), on: channel)
        case AMQP_BASIC_GET_EMPTY_METHOD:
            completeHead(of: channel, with: .success(.getEmpty))
        case AMQP_BASIC_CANCEL_METHOD:
            let cancel = decoded!.assumingMemoryBound(to: amqp_basic_cancel_t.self).pointee
            let tag = cancel.consumer_tag.string
            if cancel.nowait == 0 {
                let arena = CArena()
                var ok = amqp_basic_cancel_ok_t(consumer_tag: arena.bytes(tag))
                _ = amqp_send_method(connection, channel.id, AMQP_BASIC_CANCEL_OK_METHOD, &ok)
            }
            logger.warning("broker cancelled a consumer", metadata: ["amqp.consumer": "\(tag)", "amqp.channel": "\(channel.id)"])
            channel.consumers.removeValue(forKey: tag)?.finish(AMQPError(
                .consumerCancelled, message: "the broker cancelled consumer \(tag) (its queue was deleted or became unavailable)"))
        case AMQP_CHANNEL_CLOSE_METHOD:
            let close = decoded!.assumingMemoryBound(to: amqp_channel_close_t.self).pointee
            var ok = amqp_channel_close_ok_t(dummy: 0)
            _ = amqp_send_method(connection, channel.id, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok)
            let error = AMQPError(
                .channelClosed, replyCode: close.reply_code, replyText: close.reply_text.string,
                message: "the broker closed channel \(channel.id)")
            logger.debug("broker closed a channel", metadata: ["amqp.channel": "\(channel.id)", "error": "\(error)"])
            closeChannel(channel, error: error, normal: false)
        case AMQP_CHANNEL_FLOW_METHOD:
            let flow = decoded!.assumingMemoryBound(to: amqp_channel_flow_t.self).pointee
            var ok = amqp_channel_flow_ok_t(active: flow.active)
            _ = amqp_send_method(connection, channel.id, AMQP_CHANNEL_FLOW_OK_METHOD, &ok)
        default:
            guard let head = channel.rpcQueue.first, head.method.expectedReply == method.id else {
                connectionFailed(AMQPError(.protocolError, message: "unexpected method \(method.id) on channel \(channel.id)"))
                return
            }
            let reply: MethodReply
            switch method.id {
            case AMQP_QUEUE_DECLARE_OK_METHOD:
                let ok = decoded!.assumingMemoryBound(to: amqp_queue_declare_ok_t.self).pointee
                reply = .queueDeclared(name: ok.queue.string, messageCount: ok.message_count, consumerCount: ok.consumer_count)
            case AMQP_QUEUE_PURGE_OK_METHOD:
                reply = .messageCount(decoded!.assumingMemoryBound(to: amqp_queue_purge_ok_t.self).pointee.message_count)
            case AMQP_QUEUE_DELETE_OK_METHOD:
                reply = .messageCount(decoded!.assumingMemoryBound(to: amqp_queue_delete_ok_t.self).pointee.message_count)
            case AMQP_BASIC_CONSUME_OK_METHOD:
                reply = .consumerTag(decoded!.assumingMemoryBound(to: amqp_basic_consume_ok_t.self).pointee.consumer_tag.string)
            case AMQP_BASIC_CANCEL_OK_METHOD:
                let tag = decoded!.assumingMemoryBound(to: amqp_basic_cancel_ok_t.self).pointee.consumer_tag.string
                channel.consumers.removeValue(forKey: tag)?.finish(nil)
                reply = .done
            case AMQP_CONFIRM_SELECT_OK_METHOD:
                if channel.confirms == nil { channel.confirms = ConfirmTracker() }
                if case .confirmSelect(let timeout) = head.method { channel.confirmTimeout = timeout }
                reply = .done
            case AMQP_CHANNEL_CLOSE_OK_METHOD:
                // Marked closed before `close()` returns, so its caller never sees the channel open afterwards.
                let error = AMQPError(.channelClosed, message: "channel \(channel.id) was closed by the client")
                channel.shared.markClosed(error)
                completeHead(of: channel, with: .success(.done))
                closeChannel(channel, error: error, normal: true)
                return
            default:
                reply = .done
            }
            completeHead(of: channel, with: .success(reply))
        }
    }

    private func contentOutcome(_ outcome: ContentAssembler<ContentMethod>.Outcome, on channel: ChannelIO) {
        switch outcome {
        case .incomplete:
            return
        case .protocolViolation(let why):
            connectionFailed(AMQPError(.protocolError, message: why))
        case .complete(let method, let properties, let body):
            switch method {
            case .deliver(let consumerTag, let deliveryTag, let redelivered, let exchange, let routingKey):
                let message = InboundMessage(
                    body: body, properties: properties, deliveryTag: deliveryTag, redelivered: redelivered,
                    exchange: exchange, routingKey: routingKey, consumerTag: consumerTag, messageCount: 0)
                if let sink = channel.consumers[consumerTag] {
                    deliveriesSinceSleep += 1
                    if sink.acknowledges {
                        channel.lastDeliveryTag = deliveryTag
                        lastDeliveryAt = ContinuousClock.now
                    }
                    if sink.yield(message) { sinksToWake.append(sink) }
                }
            case .getOk(let deliveryTag, let redelivered, let exchange, let routingKey, let messageCount):
                let message = InboundMessage(
                    body: body, properties: properties, deliveryTag: deliveryTag, redelivered: redelivered,
                    exchange: exchange, routingKey: routingKey, consumerTag: "", messageCount: messageCount)
                completeHead(of: channel, with: .success(.gotMessage(message)))
            case .returned(let replyCode, let replyText, let exchange, let routingKey):
                let info = ConfirmTracker<PublishRecord>.ReturnedInfo(replyCode: replyCode, replyText: replyText)
                let matched = channel.confirms?.markReturned(info) { record in
                    record.mandatory && record.exchange == exchange && record.routingKey == routingKey && record.body == body
                } ?? false
                if !matched {
                    logger.warning(
                        "a mandatory message was returned as unroutable",
                        metadata: ["amqp.exchange": "\(exchange)", "amqp.routing_key": "\(routingKey)", "reply": "\(replyCode) \(replyText)"])
                }
            }
        }
    }

    private func confirm(on channel: ChannelIO, deliveryTag: UInt64, multiple: Bool, nacked: Bool) {
        guard let settled = channel.confirms?.settle(deliveryTag: deliveryTag, multiple: multiple) else { return }
        for entry in settled {
            if let returned = entry.returned {
                entry.token.waiter.complete(.failure(AMQPError(
                    .unroutable, replyCode: returned.replyCode, replyText: returned.replyText,
                    message: "no queue is bound for routing key '\(entry.token.routingKey)' on exchange '\(entry.token.exchange)'")))
            } else if nacked {
                entry.token.waiter.complete(.failure(AMQPError(.nacked, message: "the broker nacked the publish (sequence \(entry.sequence))")))
            } else {
                entry.token.waiter.complete(.success(()))
            }
        }
    }

    // MARK: - Executing commands

    private func execute(_ command: IOCommand) {
        switch command {
        case .openChannel(let continuation):
            guard let id = freeChannelID() else {
                continuation.resume(throwing: AMQPError(.invalidArgument, message: "all \(channelMax) channels are in use"))
                return
            }
            let shared = ChannelShared(id: id)
            let channel = ChannelIO(id: id, shared: shared)
            channels[id] = channel
            enqueue(.channelOpen, on: channel) { result in
                continuation.resume(with: result.map { _ in shared }.mapError { $0 as any Error })
            }
        case .method(let target, let method, let continuation):
            guard let channel = usableChannel(target, failing: { continuation.resume(throwing: $0) }) else { return }
            if case .basicQos(let prefetch, _) = method { channel.shared.prefetch.store(prefetch, ordering: .relaxed) }
            enqueue(method, on: channel) { continuation.resume(with: $0.mapError { $0 as any Error }) }
        case .consume(let target, let method, let sink, let continuation):
            guard let channel = usableChannel(target, failing: {
                sink.finish($0)
                continuation.resume(throwing: $0)
            }) else { return }
            guard case .basicConsume(_, let tag, _, _, _) = method else { preconditionFailure("consume needs basic.consume") }
            channel.consumers[tag] = sink
            enqueue(method, on: channel) { result in
                if case .failure(let error) = result { channel.consumers.removeValue(forKey: tag)?.finish(error) }
                continuation.resume(with: result.mapError { $0 as any Error })
            }
        case .publish(let target, let message, let waiter):
            guard let channel = usableChannel(target, failing: { waiter.complete(.failure($0)) }) else { return }
            if blocked {
                pausedPublishes.append((target, message, waiter))
                return
            }
            publish(message, on: channel, waiter: waiter)
        case .settle(let target, let settlement):
            // A settlement for a channel that is gone is dropped: the broker requeues what that channel held.
            guard let channel = channels[target.id], channel.shared === target else { return }
            settle(settlement, on: channel)
        case .close(let continuation):
            closeConnection(waiter: continuation)
        }
    }

    /// Acks go through the channel's coalescer (one `multiple` ack per contiguous run); nacks, rejects and explicit
    /// multiple acks are sent at once, ordered so that a held ack never settles a tag the application meant otherwise.
    private func settle(_ settlement: Settlement, on channel: ChannelIO) {
        switch settlement {
        case .ack(let tag, false):
            channel.acks.ack(tag, now: ContinuousClock.now)
            channelsWithPendingAcks.insert(channel.id)
        case .ack(let tag, true):
            sendSettlement(.ack(deliveryTag: tag, multiple: true), on: channel.id)
            sendAcks(channel.acks.settledElsewhere(tag, multiple: true), on: channel.id)
        case .nack(let tag, true, _):
            // A multiple nack would also nack the acks held for tags up to it: send those first.
            sendAcks(channel.acks.flush(force: true), on: channel.id)
            sendSettlement(settlement, on: channel.id)
            sendAcks(channel.acks.settledElsewhere(tag, multiple: true), on: channel.id)
        case .nack(let tag, false, _), .reject(let tag, _):
            sendSettlement(settlement, on: channel.id)
            sendAcks(channel.acks.settledElsewhere(tag, multiple: false), on: channel.id)
        }
    }

    /// Sends what the coalescers hold: a contiguous run once it is a batch (see ``ChannelIO/ackBatch``) or 1 ms old;
    /// everything once it is 5 ms old or 256 strong.
    /// With `quiet` (nothing arrived during the last sleep, so no delivery is coming to join a run), contiguous runs go
    /// out whatever their size or age.
    private func flushAcks(force: Bool = false, quiet: Bool = false) {
        guard !channelsWithPendingAcks.isEmpty else { return }
        let now = ContinuousClock.now
        for id in channelsWithPendingAcks {
            guard let channel = channels[id] else { continue }
            let age = channel.acks.oldestPendingSince.map { now - $0 } ?? .zero
            let due = force || channel.acks.pendingCount >= 256 || age >= Self.ackDelay
            guard due || quiet || channel.acks.pendingCount >= channel.ackBatch || age >= Self.ackBatchDelay else { continue }
            sendAcks(channel.acks.flush(force: due), on: id)
        }
        channelsWithPendingAcks = channelsWithPendingAcks.filter { (channels[$0]?.acks.pendingCount ?? 0) > 0 }
    }

    /// How long an ack may wait behind a gap before it is sent on its own.
    static let ackDelay: Duration = .milliseconds(5)
    /// How long a contiguous run of acks may wait for more before it is sent as one `multiple` ack.
    static let ackBatchDelay: Duration = .milliseconds(1)
    /// The longest sleep while acks are held or may come: bounds how late a held or lazily queued ack goes out.
    static let shortPollMilliseconds: Int32 = 1
    /// How long after a delivery the connection counts as busy (sleeps briefly rather than waiting to be woken).
    static let busyWindow: Duration = .milliseconds(20)
    /// How long the thread waits, once the socket is readable, before reading a busy stream of deliveries (see
    /// ``gathersDeliveries``). The broker sends such a stream in pieces of one to four deliveries; waiting lets the
    /// next pieces arrive, so that one `recv`, one consumer wake-up and one ack frame cover several times as many
    /// deliveries (in `warren-bench consume` the client's CPU time per delivery drops by about a third). Costs at most
    /// this much latency, and only under load: a lone delivery is read at once. Commands queued meanwhile (publishes,
    /// acks) wait as long.
    static let gatherMicroseconds: UInt32 = 300
    /// The deliveries read since the last sleep from which the stream counts as busy.
    static let gatherAfterDeliveries = 2

    private func sendAcks(_ frames: [AckCoalescer.Frame], on channelID: UInt16) {
        for case .ack(let tag, let multiple) in frames { sendSettlement(.ack(deliveryTag: tag, multiple: multiple), on: channelID) }
    }

    private func sendSettlement(_ settlement: Settlement, on channelID: UInt16) {
        guard let connection, running else { return }
        let status: Int32
        switch settlement {
        case .ack(let tag, let multiple):
            IOStatistics.count(IOStatistics.ackFrames)
            status = amqp_basic_ack(connection, channelID, tag, multiple ? 1 : 0)
        case .nack(let tag, let multiple, let requeue):
            status = amqp_basic_nack(connection, channelID, tag, multiple ? 1 : 0, requeue ? 1 : 0)
        case .reject(let tag, let requeue):
            status = amqp_basic_reject(connection, channelID, tag, requeue ? 1 : 0)
        }
        if status < 0 { connectionFailed(AMQPError(.connectionLost, message: "writing to the broker failed: \(statusText(status))")) }
    }

    private func publish(_ message: OutboundMessage, on channel: ChannelIO, waiter: PublishWaiter) {
        guard message.exchange.utf8.count <= 255, message.routingKey.utf8.count <= 255 else {
            waiter.complete(.failure(AMQPError(.invalidArgument, message: "exchange name and routing key are limited to 255 bytes")))
            return
        }
        defer { arena.reset() }
        var properties = arena.properties(message.properties)
        let status = message.body.withUnsafeBytes { body in
            amqp_basic_publish(
                connection, channel.id, arena.bytes(message.exchange), arena.bytes(message.routingKey),
                message.mandatory ? 1 : 0, 0, &properties,
                amqp_bytes_t(len: body.count, bytes: UnsafeMutableRawPointer(mutating: body.baseAddress)))
        }
        if status < 0 {
            waiter.complete(.failure(AMQPError(.connectionLost, message: "publishing failed: \(statusText(status))")))
            connectionFailed(AMQPError(.connectionLost, message: "writing to the broker failed: \(statusText(status))"))
            return
        }
        if channel.confirms != nil {
            // Only a mandatory publish keeps its body, to match a basic.return to it.
            let record = PublishRecord(
                waiter: waiter, mandatory: message.mandatory, exchange: message.mandatory ? message.exchange : "",
                routingKey: message.mandatory ? message.routingKey : "", body: message.mandatory ? message.body : [],
                deadline: channel.confirmTimeout.map { ContinuousClock.now.advanced(by: $0) })
            _ = channel.confirms!.register(record)
        } else {
            waiter.complete(.success(()))
        }
    }

    private func usableChannel(_ target: ChannelShared, failing: (AMQPError) -> Void) -> ChannelIO? {
        guard let channel = channels[target.id], channel.shared === target, !channel.closing else {
            failing(target.closeReason ?? AMQPError(.channelClosed, message: "channel \(target.id) is closed"))
            return nil
        }
        return channel
    }

    private func freeChannelID() -> UInt16? {
        var id: UInt16 = 1
        while id <= channelMax {
            if channels[id] == nil { return id }
            id += 1
        }
        return nil
    }

    /// Queues a synchronous method on its channel; AMQP allows one outstanding per channel, so the next is sent when
    /// the previous one's reply arrives.
    private func enqueue(_ method: ChannelMethod, on channel: ChannelIO, completion: @escaping (Result<MethodReply, AMQPError>) -> Void) {
        do throws(AMQPError) {
            try method.validate()
        } catch {
            completion(.failure(error))
            return
        }
        if case .channelClose = method {
            channel.closing = true
            // Acks held for this channel must reach the broker before it closes, or their messages come back.
            sendAcks(channel.acks.flush(force: true), on: channel.id)
        }
        channel.rpcQueue.append(PendingMethod(method: method, completion: completion))
        if channel.rpcQueue.count == 1 { sendHead(of: channel) }
    }

    private func sendHead(of channel: ChannelIO) {
        guard let head = channel.rpcQueue.first, let connection else { return }
        defer { arena.reset() }
        let status = head.method.send(on: connection, channel: channel.id, arena: arena)
        if status < 0 {
            connectionFailed(AMQPError(.connectionLost, message: "writing to the broker failed: \(statusText(status))"))
        }
    }

    private func completeHead(of channel: ChannelIO, with result: Result<MethodReply, AMQPError>) {
        guard !channel.rpcQueue.isEmpty else {
            connectionFailed(AMQPError(.protocolError, message: "a reply arrived on channel \(channel.id) with no request outstanding"))
            return
        }
        let head = channel.rpcQueue.removeFirst()
        head.completion(result)
        if !channel.rpcQueue.isEmpty, channels[channel.id] === channel { sendHead(of: channel) }
    }

    private func closeChannel(_ channel: ChannelIO, error: AMQPError, normal: Bool) {
        channels[channel.id] = nil
        channel.shared.markClosed(error)
        channel.assembler.reset()
        let pending = channel.rpcQueue
        channel.rpcQueue.removeAll()
        for method in pending { method.completion(.failure(error)) }
        for (_, sink) in channel.consumers { sink.finish(normal ? nil : error) }
        channel.consumers.removeAll()
        for record in channel.confirms?.removeAll() ?? [] { record.waiter.complete(.failure(error)) }
    }

    // MARK: - Ending

    private func closeConnection(waiter: UnsafeContinuation<Void, Never>?) {
        if let waiter { closeWaiters.append(waiter) }
        guard running, let connection else { return }
        let error = AMQPError(.connectionClosed, message: "the connection was closed by the client")
        // Stop accepting first, so nothing slips in between failing and closing.
        inbox.withLock { $0.accepting = false }
        // Commands already queued (acks among them) still go out, and held acks with them.
        let queued = inbox.withLock { $0.take() }
        for command in queued where running {
            if case .close(let waiter) = command { if let waiter { closeWaiters.append(waiter) } } else { execute(command) }
        }
        flushAcks(force: true)
        failEverything(error)
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        amqp_set_rpc_timeout(connection, &timeout)
        let reply = amqp_connection_close(connection, AMQP_REPLY_SUCCESS)
        if reply.reply_type != AMQP_RESPONSE_NORMAL {
            logger.debug("connection.close did not complete cleanly")
        }
        finishConnection(error, notify: true)
        logger.info("connection closed", metadata: ["amqp.connection": "\(connectionName)"])
    }

    /// The connection broke (socket error, missed heartbeats, broker close, protocol error).
    private func connectionFailed(_ error: AMQPError) {
        guard running else { return }
        logger.error("connection lost", metadata: ["amqp.connection": "\(connectionName)", "error": "\(error)"])
        inbox.withLock { $0.accepting = false }
        failEverything(error)
        finishConnection(error, notify: true)
    }

    private func failEverything(_ error: AMQPError) {
        let paused = pausedPublishes
        pausedPublishes.removeAll()
        for (_, _, waiter) in paused { waiter.complete(.failure(error)) }
        for channel in Array(channels.values) { closeChannel(channel, error: error, normal: false) }
    }

    private func finishConnection(_ error: AMQPError, notify: Bool) {
        running = false
        inbox.withLock { $0.accepting = false }
        let (listeners, waiters) = publicState.withLock { state in
            state.isOpen = false
            if state.closeReason == nil { state.closeReason = error }
            defer {
                state.listeners.removeAll()
                state.closedWaiters.removeAll()
            }
            return (Array(state.listeners.values), state.closedWaiters)
        }
        for listener in listeners {
            if notify { listener.yield(.closed(error)) }
            listener.finish()
        }
        for waiter in waiters { waiter.resume() }
    }

    private func emit(_ event: AMQPConnectionEvent, update: (inout PublicState) -> Void) {
        let listeners = publicState.withLock { state in
            update(&state)
            return Array(state.listeners.values)
        }
        for listener in listeners { listener.yield(event) }
    }
}

/// What a confirm-mode channel remembers about a publish until its confirm arrives.
struct PublishRecord {
    var waiter: PublishWaiter
    var mandatory: Bool
    var exchange: String
    var routingKey: String
    var body: [UInt8]
    /// When the wait for the broker's confirm gives up; `nil` waits as long as the connection lives.
    var deadline: ContinuousClock.Instant?
}

struct PendingMethod {
    var method: ChannelMethod
    var completion: (Result<MethodReply, AMQPError>) -> Void
}

enum ContentMethod {
    case deliver(consumerTag: String, deliveryTag: UInt64, redelivered: Bool, exchange: String, routingKey: String)
    case returned(replyCode: UInt16, replyText: String, exchange: String, routingKey: String)
    case getOk(deliveryTag: UInt64, redelivered: Bool, exchange: String, routingKey: String, messageCount: UInt32)
}

/// A channel's state on the I/O thread.
final class ChannelIO {
    let id: UInt16
    let shared: ChannelShared
    var rpcQueue: [PendingMethod] = []
    var assembler = ContentAssembler<ContentMethod>()
    var consumers: [String: ConsumerSink] = [:]
    var confirms: ConfirmTracker<PublishRecord>?
    var confirmTimeout: Duration?
    var acks = AckCoalescer()
    var closing = false
    /// The last delivery tag of a consumer that acks.
    var lastDeliveryTag: UInt64 = 0

    /// Deliveries the application may still ack.
    var hasUnsettledDeliveries: Bool { lastDeliveryTag >= acks.nextUnsettled }

    /// Whether the broker, by the prefetch, may send this channel's consumers nothing more until some are settled.
    var hasFullWindow: Bool { windowShareInUse(atLeast: 1) }

    /// Whether deliveries unsettled on the wire use at least half of the prefetch window.
    var hasHalfFullWindow: Bool { windowShareInUse(atLeast: 2) }

    /// Whether the deliveries the broker counts as unacknowledged (held acks included) are at least
    /// 1/`fraction` of the prefetch; never without a prefetch.
    private func windowShareInUse(atLeast fraction: UInt64) -> Bool {
        let prefetch = UInt64(shared.prefetch.load(ordering: .relaxed))
        let unsettledOnWire = (lastDeliveryTag + 1) - min(acks.nextUnsettled, lastDeliveryTag + 1)
        return prefetch > 0 && fraction * unsettledOnWire >= prefetch
    }

    /// See ``ChannelShared/ackBatch``.
    var ackBatch: Int { shared.ackBatch }

    init(id: UInt16, shared: ChannelShared) {
        self.id = id
        self.shared = shared
    }
}

func statusText(_ status: Int32) -> String {
    String(cString: amqp_error_string2(status))
}

private func isTLSStatus(_ status: Int32) -> Bool {
    (AMQP_STATUS_SSL_SET_ENGINE_FAILED.rawValue...AMQP_STATUS_SSL_ERROR.rawValue).contains(status)
}

extension timeval {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self.init(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
    }
}
