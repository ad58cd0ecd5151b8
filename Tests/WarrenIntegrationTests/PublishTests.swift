import Testing
import WarrenAMQP
import WarrenTestSupport

@Suite("Publishing with confirms (broker)", .tags(.broker), .needs(.broker), .deletesItsQueues)
struct PublishTests {
    @Test func unroutableMandatoryPublishFailsWithTheReturn() async throws {
        try await withConnection { connection in
            let channel = try await connection.openChannel()
            try await channel.enableConfirms()
            do {
                try await channel.publish("nowhere".bytes, routingKey: TestBroker.uniqueName(), mandatory: true)
                Issue.record("no queue is bound")
            } catch let error as AMQPError {
                #expect(error.code == .unroutable)
                #expect(error.replyCode == 312)
                #expect(error.replyText == "NO_ROUTE")
            }
            // Without mandatory the broker drops it and confirms.
            try await channel.publish("dropped".bytes, routingKey: TestBroker.uniqueName())
            #expect(channel.isOpen)
        }
    }

    @Test func returnsAreMatchedToTheRightPublishInABatch() async throws {
        try await withConnection { connection in
            let channel = try await connection.openChannel()
            try await channel.enableConfirms()
            let queue = TestBroker.uniqueName()
            try await channel.queueDeclare(queue, exclusive: true)
            let missing = TestBroker.uniqueName("missing")
            let messages = (0..<20).map { n in
                AMQPOutboundMessage(body: "\(n)".bytes, routingKey: n % 3 == 0 ? missing : queue, mandatory: true)
            }
            let results = await channel.publish(contentsOf: messages)
            for (n, result) in results.enumerated() {
                switch result {
                case .success: #expect(n % 3 != 0, "message \(n) was unroutable")
                case .failure(let error):
                    #expect(n % 3 == 0, "message \(n) was routable")
                    #expect(error.code == .unroutable)
                }
            }
            #expect(try await channel.queueStatus(queue).messageCount == 13)
        }
    }

    @Test func publishingToAMissingExchangeIs404() async throws {
        try await withConnection { connection in
            let channel = try await connection.openChannel()
            try await channel.enableConfirms()
            do {
                try await channel.publish("x".bytes, exchange: TestBroker.uniqueName("nope"), routingKey: "k")
                Issue.record("the exchange does not exist")
            } catch let error as AMQPError {
                #expect(error.code == .channelClosed)
                #expect(error.replyCode == 404)
            }
        }
    }

    @Test func pipelinedBatchIsConfirmedInFull() async throws {
        try await withConnection { connection in
            let channel = try await connection.openChannel()
            try await channel.enableConfirms()
            let queue = TestBroker.uniqueName()
            try await channel.queueDeclare(queue, exclusive: true)
            let batch = (0..<5000).map {
                AMQPOutboundMessage(
                    body: "\($0)".bytes, routingKey: queue, properties: AMQPProperties(deliveryMode: .persistent))
            }
            let results = await channel.publish(contentsOf: batch)
            #expect(results.count == 5000)
            #expect(results.allSatisfy { if case .success = $0 { true } else { false } })
            #expect(try await channel.queueStatus(queue).messageCount == 5000)
        }
    }

    @Test func concurrentPublishersEachGetTheirOwnConfirm() async throws {
        try await withConnection { connection in
            let channel = try await connection.openChannel()
            try await channel.enableConfirms()
            let queue = TestBroker.uniqueName()
            try await channel.queueDeclare(queue, exclusive: true)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for task in 0..<20 {
                    group.addTask {
                        for n in 0..<50 { try await channel.publish("\(task)-\(n)".bytes, routingKey: queue) }
                    }
                }
                try await group.waitForAll()
            }
            #expect(try await channel.queueStatus(queue).messageCount == 1000)
        }
    }

    @Test func publishWithoutConfirmModeReturnsOnceWritten() async throws {
        try await withConnection { connection in
            let channel = try await connection.openChannel()
            let queue = TestBroker.uniqueName()
            try await channel.queueDeclare(queue, exclusive: true)
            for n in 0..<100 { try await channel.publish("\(n)".bytes, routingKey: queue) }
            #expect(try await eventually { try await channel.queueStatus(queue).messageCount == 100 })
        }
    }
}
