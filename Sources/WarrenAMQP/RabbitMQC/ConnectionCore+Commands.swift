import CRabbitMQ
import Foundation

/// Commands out: what tasks asked for, carried out on the I/O thread.
extension ConnectionCore {
    func fail(_ command: IOCommand, with error: AMQPError) {
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

    func execute(_ command: IOCommand) {
        switch command {
        case .openChannel(let continuation):
            guard let id = freeChannelID() else {
                continuation.resume(
                    throwing: AMQPError(.invalidArgument, message: "all \(channelMax) channels are in use"))
                return
            }
            let handle = ChannelHandle(id: id)
            let channel = ChannelBookkeeping(handle: handle)
            channels[id] = channel
            enqueue(.channelOpen, on: channel) { result in
                continuation.resume(with: result.map { _ in handle }.mapError { $0 as any Error })
            }
        case .method(let target, let method, let continuation):
            guard let channel = usableChannel(target, failing: { continuation.resume(throwing: $0) }) else { return }
            if case .basicQos(let prefetch, _) = method { channel.handle.prefetch.store(prefetch, ordering: .relaxed) }
            enqueue(method, on: channel) { continuation.resume(with: $0.mapError { $0 as any Error }) }
        case .consume(let target, let method, let sink, let continuation):
            guard
                let channel = usableChannel(
                    target,
                    failing: {
                        sink.finish($0)
                        continuation.resume(throwing: $0)
                    })
            else { return }
            guard case .basicConsume(_, let tag, _, _, _) = method else {
                preconditionFailure("consume needs basic.consume")
            }
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
            guard let channel = channels[target.id], channel.handle === target else { return }
            settle(settlement, on: channel)
        case .close(let continuation):
            closeConnection(waiter: continuation)
        }
    }

    /// Acks go through the channel's coalescer (one `multiple` ack per contiguous run); nacks, rejects and explicit
    /// multiple acks are sent at once, ordered so that a held ack never settles a tag the application meant otherwise.
    func settle(_ settlement: SettlementMethod, on channel: ChannelBookkeeping) {
        switch settlement {
        case .ack(let tag, false):
            channel.acks.ack(tag, now: ContinuousClock.now)
            channelsWithHeldAcks.insert(channel.id)
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

    func sendAcks(_ frames: [AckCoalescer.Frame], on channelID: UInt16) {
        for case .ack(let tag, let multiple) in frames {
            sendSettlement(.ack(deliveryTag: tag, multiple: multiple), on: channelID)
        }
    }

    func sendSettlement(_ settlement: SettlementMethod, on channelID: UInt16) {
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
        if status < 0 {
            connectionFailed(AMQPError(.connectionLost, message: "writing to the broker failed: \(statusText(status))"))
        }
    }

    func publish(_ message: AMQPOutboundMessage, on channel: ChannelBookkeeping, waiter: PublishWaiter) {
        guard message.exchange.utf8.count <= 255, message.routingKey.utf8.count <= 255 else {
            waiter.complete(
                .failure(AMQPError(.invalidArgument, message: "exchange name and routing key are limited to 255 bytes"))
            )
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

    func usableChannel(_ target: ChannelHandle, failing: (AMQPError) -> Void) -> ChannelBookkeeping? {
        guard let channel = channels[target.id], channel.handle === target, !channel.closing else {
            failing(target.closeReason ?? AMQPError(.channelClosed, message: "channel \(target.id) is closed"))
            return nil
        }
        return channel
    }

    func freeChannelID() -> UInt16? {
        var id: UInt16 = 1
        while id <= channelMax {
            if channels[id] == nil { return id }
            id += 1
        }
        return nil
    }

    /// Queues a synchronous method on its channel; AMQP allows one outstanding per channel, so the next is sent when
    /// the previous one's reply arrives.
    func enqueue(
        _ method: ChannelMethod, on channel: ChannelBookkeeping,
        completion: @escaping (Result<MethodReply, AMQPError>) -> Void
    ) {
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
        channel.pendingMethods.append(PendingMethod(method: method, completion: completion))
        if channel.pendingMethods.count == 1 { sendHead(of: channel) }
    }

    func sendHead(of channel: ChannelBookkeeping) {
        guard let head = channel.pendingMethods.first, let connection else { return }
        defer { arena.reset() }
        let status = head.method.send(on: connection, channel: channel.id, arena: arena)
        if status < 0 {
            connectionFailed(AMQPError(.connectionLost, message: "writing to the broker failed: \(statusText(status))"))
        }
    }

    func completeHead(of channel: ChannelBookkeeping, with result: Result<MethodReply, AMQPError>) {
        guard !channel.pendingMethods.isEmpty else {
            connectionFailed(
                AMQPError(
                    .protocolError, message: "a reply arrived on channel \(channel.id) with no request outstanding"))
            return
        }
        let head = channel.pendingMethods.removeFirst()
        head.completion(result)
        if !channel.pendingMethods.isEmpty, channels[channel.id] === channel { sendHead(of: channel) }
    }

    func closeChannel(_ channel: ChannelBookkeeping, error: AMQPError, normal: Bool) {
        channels[channel.id] = nil
        channel.handle.markClosed(error)
        channel.assembler.reset()
        let pending = channel.pendingMethods
        channel.pendingMethods.removeAll()
        for method in pending { method.completion(.failure(error)) }
        for (_, sink) in channel.consumers { sink.finish(normal ? nil : error) }
        channel.consumers.removeAll()
        for record in channel.confirms?.removeAll() ?? [] { record.waiter.complete(.failure(error)) }
    }
}
