import Foundation
import Testing
@_spi(WarrenTransport) import Warren
import WarrenAMQP
import WarrenLocalBroker
import WarrenTestSupport

@testable import WarrenDashboard

/// The queues page's rates and unacked counts from RabbitMQ's management API, on a node of its own with the plugin on.
@Suite("The queues page over the management API (broker)", .tags(.broker), .needs(.broker), .deletesItsQueues)
struct QueueInspectorManagementTests {
    @Test func ratesAndUnackedComeFromTheManagementAPI() async throws {
        let broker = try await bootingOneAtATime {
            try await LocalBroker.start(
                LocalBrokerConfiguration(
                    plugins: LocalBrokerConfiguration.warrenPlugins + ["rabbitmq_management"],
                    extraConfiguration: ["collect_statistics_interval = 500"]))
        }
        let managementPort = try #require(broker.managementPort)
        let queue = TestBroker.uniqueName("managed")
        let transport = RabbitMQTransport(
            endpoints: [try AMQPEndpoint(uri: broker.amqpURL)], logger: TestBroker.quietLogger())
        try await transport.start()
        try await transport.prepare(queue: queue, delays: [.seconds(5)])
        for index in 1...3 {
            try await transport.publish(
                Array("{}".utf8), to: .queue(queue), properties: AMQPProperties(messageID: "m-\(index)"))
        }
        // One delivered and held: AMQP's passive declare cannot see it, the management API can.
        let consumer = try await AMQPConnection.connect(to: AMQPEndpoint(uri: broker.amqpURL))
        let channel = try await consumer.openChannel()
        let held = try await channel.get(queue: queue)
        #expect(held != nil)

        let inspector = AMQPQueueInspector(
            endpoints: [try AMQPEndpoint(uri: broker.amqpURL)],
            managementURL: URL(string: "http://127.0.0.1:\(managementPort)"),
            logger: TestBroker.quietLogger())
        var overview: QueueOverview?
        #expect(
            try await eventually(timeout: .seconds(30)) {
                overview = await inspector.inspect([queue]).first
                return overview?.rates?.unacked == 1
            }, "\(String(describing: overview))")
        #expect(overview?.queues.first { $0.role == "work" }?.messages == 2)
        // A rate is over the last few seconds: publish while looking.
        let publishing = Task {
            var index = 10
            while !Task.isCancelled {
                try await transport.publish(
                    Array("{}".utf8), to: .queue(queue), properties: AMQPProperties(messageID: "m-\(index)"))
                index += 1
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        #expect(
            try await eventually(timeout: .seconds(30)) {
                overview = await inspector.inspect([queue]).first
                return (overview?.rates?.publishedPerSecond ?? 0) > 1
            }, "\(String(describing: overview?.rates))")
        publishing.cancel()
        _ = await publishing.result
        #expect(overview?.queues.first { $0.role == "delay" }?.delayMilliseconds == 5_000)
        #expect(overview?.holder == nil, "no exclusive consumer")
        // An ordered flow's partition: its holder is named by its exclusive consumer's tag.
        let flow = try PartitionedFlow(TestBroker.uniqueName("held"), partitions: 1)
        try await transport.prepare(flow: flow)
        let holding = try #require(try await transport.consumeExclusively(queue: flow.queue(0), prefetch: 1))
        var partition: QueueOverview?
        #expect(
            try await eventually(timeout: .seconds(30)) {
                partition = await inspector.inspect([flow.queue(0)]).first
                return partition?.holder != nil
            }, "\(String(describing: partition))")
        #expect(
            partition?.holder
                == "\(ProcessInfo.processInfo.hostName) (pid \(ProcessInfo.processInfo.processIdentifier))")
        await holding.close()
        // A wrong address gives the AMQP figures without rates, not an error.
        let unmanaged = AMQPQueueInspector(
            endpoints: [try AMQPEndpoint(uri: broker.amqpURL)],
            managementURL: URL(string: "http://127.0.0.1:\(try freeTCPPort())"),
            logger: TestBroker.quietLogger())
        let plain = await unmanaged.inspect([queue]).first
        #expect(plain?.rates == nil && plain?.problem == nil && (plain?.queues.first?.messages ?? 0) > 2)

        await inspector.close()
        await unmanaged.close()
        await consumer.close()
        await transport.close()
        try await broker.stop()
    }
}
