import Foundation
import Testing
import WarrenAMQP
import WarrenTestSupport

@Suite("Connecting and closing (broker)", .tags(.broker), .needs(.broker), .deletesItsQueues)
struct ConnectionTests {
    @Test func connectsAndReadsServerProperties() async throws {
        try await withConnection { connection in
            #expect(connection.isOpen)
            #expect(connection.serverProperties["product"]?.stringValue == "RabbitMQ")
            #expect(connection.description.contains(":***@"))
            #expect(!connection.description.contains(":\(connection.endpoint.password)@"))
        }
    }

    @Test func wrongPasswordIsAnAuthenticationErrorWithoutThePassword() async throws {
        var endpoint = try await TestBroker.endpoint()
        endpoint.password = "very-secret-wrong-pw"
        do {
            _ = try await AMQPConnection.connect(to: endpoint)
            Issue.record("a wrong password must not connect")
        } catch let error as AMQPError {
            #expect(error.code == .authenticationFailed)
            #expect(error.replyCode == 403)
            #expect(!error.description.contains("very-secret-wrong-pw"))
            #expect(!error.message.contains("very-secret-wrong-pw"))
        }
    }

    @Test func unknownVirtualHostIsRefused() async throws {
        var endpoint = try await TestBroker.endpoint()
        endpoint.virtualHost = "no-such-vhost"
        await #expect(throws: AMQPError.self) { _ = try await AMQPConnection.connect(to: endpoint) }
        do {
            _ = try await AMQPConnection.connect(to: endpoint)
        } catch let error as AMQPError {
            #expect(error.code == .authenticationFailed)
            #expect(error.message.contains("no-such-vhost"))
        }
    }

    @Test func closedPortFailsFastWithConnectionFailed() async throws {
        // Refused at once, not after the 20 s connection timeout (the bound leaves room for a loaded machine).
        let endpoint = try AMQPEndpoint(uri: "amqp://guest:guest@127.0.0.1:1/?connection_timeout=20000")
        let clock = ContinuousClock()
        let started = clock.now
        do {
            _ = try await AMQPConnection.connect(to: endpoint)
            Issue.record("nothing listens on port 1")
        } catch let error as AMQPError {
            #expect(error.code == .connectionFailed)
        }
        #expect(clock.now - started < .seconds(10))
    }

    @Test func triesEachEndpointInTurn() async throws {
        let good = try await TestBroker.endpoint()
        let bad = try AMQPEndpoint(uri: "amqp://guest:guest@127.0.0.1:1/?connection_timeout=1000")
        let connection = try await AMQPConnection.connect(to: [bad, good])
        #expect(connection.endpoint.port == good.port)
        await connection.close()

        do {
            _ = try await AMQPConnection.connect(to: [bad, bad])
            Issue.record("no endpoint is reachable")
        } catch let error as AMQPError {
            #expect(error.code == .connectionFailed)
            #expect(error.message.contains("no endpoint accepted"))
        }
    }

    @Test func cleanCloseEndsEverythingAndIsIdempotent() async throws {
        let connection = try await TestBroker.connect()
        let channel = try await connection.openChannel()
        let queue = TestBroker.uniqueName()
        try await channel.queueDeclare(queue, exclusive: true)
        let consumer = try await channel.consume(queue: queue)
        let events = connection.events()

        await connection.close()
        #expect(!connection.isOpen)
        #expect(!channel.isOpen)
        #expect(connection.closeReason?.code == .connectionClosed)
        await connection.close()  // again: returns at once
        await connection.waitUntilClosed()

        var iterator = consumer.makeAsyncIterator()
        await #expect(throws: AMQPError.self) { _ = try await iterator.next() }
        await #expect(throws: AMQPError.self) { try await channel.queueDeclare(queue) }
        #expect(throws: AMQPError.self) { try channel.ack(deliveryTag: 1) }
        await #expect(throws: AMQPError.self) { _ = try await connection.openChannel() }

        var seen: [AMQPConnectionEvent] = []
        for await event in events { seen.append(event) }
        #expect(seen.count == 1)
        if case .closed(let error)? = seen.first {
            #expect(error.code == .connectionClosed)
        } else {
            Issue.record("expected .closed")
        }
    }

    @Test func manyChannelsOnOneConnection() async throws {
        try await withConnection { connection in
            var channels: [AMQPChannel] = []
            for _ in 0..<50 { channels.append(try await connection.openChannel()) }
            #expect(Set(channels.map(\.id)).count == 50)
            for channel in channels.prefix(25) { try await channel.close() }
            let reopened = try await connection.openChannel()
            #expect(reopened.id <= 25, "closed channel numbers are reused")
            #expect(channels.last!.isOpen)
        }
    }

    @Test func aClosedChannelNeverActsOnTheChannelThatReusesItsNumber() async throws {
        try await withConnection { connection in
            let old = try await connection.openChannel()
            try await old.close()
            let new = try await connection.openChannel()
            #expect(new.id == old.id)
            let queue = TestBroker.uniqueName()
            try await new.queueDeclare(queue, exclusive: true)
            try await new.enableConfirms()
            try await new.publish("kept".bytes, routingKey: queue)
            let consumer = try await new.consume(queue: queue)
            let delivery = try await nextDelivery(consumer)

            let staleAck = #expect(throws: AMQPError.self) { try old.ack(deliveryTag: delivery.deliveryTag) }
            #expect(staleAck?.code == .channelClosed)
            await #expect(throws: AMQPError.self) { try await old.publish("stray".bytes, routingKey: queue) }
            #expect(new.isOpen)
            try delivery.nack(requeue: true)
            let again = try await nextDelivery(consumer)
            #expect(again.redelivered, "the stale ack must not have acknowledged the new channel's delivery")
        }
    }

    @Test func heartbeatsKeepAnIdleConnectionAlive() async throws {
        try await withConnection(query: "heartbeat=1") { connection in
            let channel = try await connection.openChannel()
            // The broker closes a connection after two missed heartbeats (2 s here).
            try await Task.sleep(for: .seconds(4))
            #expect(connection.isOpen)
            let status = try await channel.queueDeclare(TestBroker.uniqueName(), exclusive: true)
            #expect(status.messageCount == 0)
        }
    }

    @Test func heartbeatsKeepABusyConnectionAlive() async throws {
        try await withConnection(query: "heartbeat=1") { connection in
            let channel = try await connection.openChannel()
            let queue = TestBroker.uniqueName()
            try await channel.queueDeclare(queue, exclusive: true)
            let consumer = try await channel.consume(queue: queue, prefetchCount: 10)
            let clock = ContinuousClock()
            let end = clock.now.advanced(by: .seconds(4))
            var handled = 0
            var iterator = consumer.makeAsyncIterator()
            while clock.now < end {
                try await channel.publish("work".bytes, routingKey: queue)
                guard let delivery = try await iterator.next() else { break }
                try delivery.ack()
                handled += 1
                try await Task.sleep(for: .milliseconds(20))  // a handler busy between messages
            }
            #expect(connection.isOpen)
            // Busy throughout: at least one message in flight every 400 ms, even on a loaded machine.
            #expect(handled >= 10)
        }
    }
}
