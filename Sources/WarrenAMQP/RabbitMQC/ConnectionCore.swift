import CRabbitMQ
import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Owns one librabbitmq connection and the OS thread that alone may touch it.
///
/// Tasks talk to the thread through ``submit(_:lazyLimit:)``: a ``CommandInbox`` behind a mutex, plus a self-pipe that
/// wakes the thread out of `poll` on the socket. The thread's loop takes the commands, flushes held acks, reads frames
/// and sleeps as its ``IOLoopStateMachine`` decides. Frames in: ConnectionCore+Frames.swift; commands out:
/// ConnectionCore+Commands.swift.
final class ConnectionCore: @unchecked Sendable {
    // @unchecked Sendable: `inbox` and `publicState` are Mutex-protected and `wakeup` is Sendable; the `let`s are
    // immutable; every other stored property (the librabbitmq connection state, the channel table, the loop's state
    // machine) is read and written only by the I/O thread, which alone runs `run()` and the methods it calls.
    // `connectedEndpoint` and `serverProperties` are written once by that thread before `start()` returns.

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
    private let inbox = Mutex(CommandInbox())
    let publicState = Mutex(PublicState())
    private let wakeup = Wakeup()

    // I/O thread only.
    var connection: amqp_connection_state_t?
    var channels: [UInt16: ChannelBookkeeping] = [:]
    var channelMax: UInt16 = 2047
    var running = true
    private var closeWaiters: [UnsafeContinuation<Void, Never>] = []
    var pacing = IOLoopStateMachine(heartbeatSeconds: 0, now: .now)
    /// While the broker blocks the connection, publishes wait here instead of filling the socket (and stalling this
    /// thread in a send), and go out in order once it unblocks.
    var blocked = false
    var pausedPublishes: [(ChannelHandle, AMQPOutboundMessage, PublishWaiter)] = []
    var channelsWithHeldAcks: Set<UInt16> = []
    /// Consumers that got deliveries during this read pass while their task waited; woken once at its end.
    var sinksToWake: [ConsumerSink] = []
    let names = NameCache()
    /// C memory for the method or publish being sent; reset after each.
    let arena = CArena()
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
                switch Handshake(connectionName: connectionName, logger: logger).connect(to: endpoints) {
                case .success(let established):
                    adopt(established)
                    continuation.resume()
                    run()
                case .failure(let error):
                    finishConnection(error, notify: false)
                    continuation.resume(throwing: error)
                }
            }
            thread.name = "warren-amqp-io"
            thread.stackSize = 8 << 20
            thread.start()
        }
    }

    private func adopt(_ established: Handshake.Established) {
        connection = established.state
        connectedEndpoint = established.endpoint
        channelMax = established.channelMax
        serverProperties = established.serverProperties
        pacing = IOLoopStateMachine(heartbeatSeconds: established.heartbeatSeconds, now: .now)
        publicState.withLock { $0.isOpen = true }
        logger.info(
            "connected", metadata: ["amqp.endpoint": "\(established.endpoint)", "amqp.connection": "\(connectionName)"])
    }

    // MARK: - Commands from tasks

    /// Queues a command for the I/O thread and wakes it when it sleeps (a plain ack only in the cases
    /// ``IOLoopStateMachine/wakes(sleep:wakePending:lazyQueued:lazyLimit:)`` says); returns false when the connection
    /// no longer accepts commands, after failing the command.
    @discardableResult
    func submit(_ command: IOCommand, lazyLimit: Int? = nil) -> Bool {
        let (accepted, wake) = inbox.withLock { inbox -> (Bool, Bool) in
            guard inbox.accepting else { return (false, false) }
            return (true, inbox.enqueue(command, lazyLimit: lazyLimit))
        }
        if wake { wakeup.signal() }
        if !accepted { fail(command, with: closedError) }
        return accepted
    }

    private var closedError: AMQPError {
        publicState.withLock { $0.closeReason } ?? AMQPError(.connectionClosed, message: "the connection is closed")
    }

    // MARK: - The I/O loop

    private func run() {
        var descriptors = [
            pollfd(fd: amqp_get_sockfd(connection), events: Int16(POLLIN), revents: 0),
            pollfd(fd: wakeup.readDescriptor, events: Int16(POLLIN), revents: 0),
        ]
        while running {
            let commands = inbox.withLock { $0.take() }
            execute(commands)
            guard running else { break }
            flushAcks(closing: false)
            guard running else { break }
            let drained = readFrames(limit: IOLoopStateMachine.framesPerPass)
            guard running else { break }
            let now = ContinuousClock.now
            if pacing.confirmCheckIsDue(now: now) { expireConfirms(now: now) }
            let afterPass = pacing.passEnded(
                tookCommands: !commands.isEmpty, drainedSocket: drained, holdsAcks: !channelsWithHeldAcks.isEmpty,
                windows: consumerWindows(), now: now)
            guard case .sleep(let sleep, let timeout) = afterPass, inbox.withLock({ $0.fallAsleep(sleep) }) else {
                continue
            }

            descriptors[0].revents = 0
            descriptors[1].revents = 0
            let ready = poll(&descriptors, 2, Int32(timeout / .milliseconds(1)))
            inbox.withLock { $0.wake() }
            if descriptors[1].revents != 0 { wakeup.drain() }
            let afterSleep = pacing.sleepEnded(socketReadable: descriptors[0].revents != 0, nothingReady: ready == 0)
            if afterSleep.stalled { IOStatistics.count(IOStatistics.stalls) }
            if let gather = afterSleep.gather { usleep(UInt32(gather / .microseconds(1))) }
        }
        // Whoever stopped the loop already failed what was pending; stop accepting and fail late arrivals.
        let late = inbox.withLock { inbox in
            inbox.accepting = false
            return inbox.take()
        }
        let reason = closedError
        for command in late { fail(command, with: reason) }
        if let connection {
            amqp_destroy_connection(connection)
            self.connection = nil
        }
        for waiter in closeWaiters { waiter.resume() }
        closeWaiters.removeAll()
    }

    /// Executes `commands` in order. Once one ends the connection (a failed write), the rest fail with its reason:
    /// each command's waiter gets an answer.
    private func execute(_ commands: [IOCommand]) {
        for (index, command) in commands.enumerated() {
            guard running else {
                let reason = closedError
                for command in commands[index...] { fail(command, with: reason) }
                return
            }
            execute(command)
        }
    }

    private func consumerWindows() -> IOLoopStateMachine.Windows {
        var windows = IOLoopStateMachine.Windows()
        for channel in channels.values { windows.add(prefetch: channel.prefetch, unsettled: channel.unsettledOnWire) }
        return windows
    }

    /// Fails the publishes whose confirm is overdue.
    private func expireConfirms(now: ContinuousClock.Instant) {
        for channel in channels.values {
            guard let timeout = channel.confirmTimeout, (channel.confirms?.outstanding ?? 0) > 0 else { continue }
            let expired = channel.confirms?.expire { record in record.deadline.map { $0 <= now } ?? false } ?? []
            for record in expired {
                record.waiter.complete(
                    .failure(
                        AMQPError(
                            .timeout,
                            message:
                                "the broker did not confirm the publish within \(timeout); it may or may not have been enqueued"
                        )))
            }
        }
    }

    /// Sends what the channels' coalescers hold, as ``IOLoopStateMachine/ackFlush(held:heldSince:prefetch:closing:now:)``
    /// decides for each.
    func flushAcks(closing: Bool) {
        guard !channelsWithHeldAcks.isEmpty else { return }
        let now = ContinuousClock.now
        for id in channelsWithHeldAcks {
            guard let channel = channels[id] else { continue }
            let flush = pacing.ackFlush(
                held: channel.acks.pendingCount, heldSince: channel.acks.oldestPendingSince, prefetch: channel.prefetch,
                closing: closing, now: now)
            guard flush != .hold else { continue }
            sendAcks(channel.acks.flush(force: flush == .everything), on: id)
        }
        channelsWithHeldAcks = channelsWithHeldAcks.filter { (channels[$0]?.acks.pendingCount ?? 0) > 0 }
    }

    // MARK: - Ending

    func closeConnection(waiter: UnsafeContinuation<Void, Never>?) {
        if let waiter { closeWaiters.append(waiter) }
        guard running, let connection else { return }
        let error = AMQPError(.connectionClosed, message: "the connection was closed by the client")
        // Stop accepting first, so nothing slips in between failing and closing.
        inbox.withLock { $0.accepting = false }
        // Commands already queued (acks among them) still go out, and held acks with them.
        var queued = inbox.withLock { $0.take() }
        queued.removeAll { command in
            guard case .close(let waiter) = command else { return false }
            if let waiter { closeWaiters.append(waiter) }
            return true
        }
        execute(queued)
        flushAcks(closing: true)
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
    func connectionFailed(_ error: AMQPError) {
        guard running else { return }
        // Reported to the application through `events()` and `closeReason`; whoever owns the connection logs the outage.
        logger.info("connection lost", metadata: ["amqp.connection": "\(connectionName)", "error": "\(error)"])
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

    func emit(_ event: AMQPConnectionEvent, update: (inout PublicState) -> Void) {
        let listeners = publicState.withLock { state in
            update(&state)
            return Array(state.listeners.values)
        }
        for listener in listeners { listener.yield(event) }
    }
}
