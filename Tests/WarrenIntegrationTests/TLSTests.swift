import Foundation
import Synchronization
import Testing
import WarrenAMQP
import WarrenLocalBroker
import WarrenTestSupport

/// amqps:// against a node with a TLS listener that requires a client certificate (mutual TLS), and certificates
/// made for this run.
@Suite("TLS (dedicated broker)", .serialized, .tags(.broker), .needs(.broker), .deletesItsQueues)
struct TLSTests {
    @Test func connectsWithTheRightCertificateAuthorityAndAClientCertificate() async throws {
        let (broker, certificates) = try await TLSBroker.get()
        let port = try #require(broker.tlsPort)
        let endpoint = try AMQPEndpoint(
            uri: "amqps://guest:guest@localhost:\(port)/?cacertfile=\(certificates.caFile)&\(certificates.clientQuery)")
        let connection = try await AMQPConnection.connect(to: endpoint, logger: TestBroker.logger)
        let channel = try await connection.openChannel()
        let queue = TestBroker.uniqueName()
        try await channel.queueDeclare(queue, exclusive: true)
        try await channel.enableConfirms()
        try await channel.publish("over tls".bytes, routingKey: queue)
        let consumer = try await channel.consume(queue: queue)
        #expect(try await nextDelivery(consumer).body == "over tls".bytes)
        await connection.close()
    }

    @Test func aWrongCertificateAuthorityIsRefused() async throws {
        let (broker, certificates) = try await TLSBroker.get()
        let port = try #require(broker.tlsPort)
        let endpoint = try AMQPEndpoint(
            uri:
                "amqps://guest:guest@localhost:\(port)/?cacertfile=\(certificates.otherCAFile)&\(certificates.clientQuery)&connection_timeout=5000"
        )
        do {
            _ = try await AMQPConnection.connect(to: endpoint, logger: TestBroker.logger)
            Issue.record("a certificate from another CA must be refused")
        } catch let error as AMQPError {
            #expect(error.code == .tlsFailed)
        }
    }

    @Test func verifyNoneAcceptsAnyCertificate() async throws {
        let (broker, certificates) = try await TLSBroker.get()
        let port = try #require(broker.tlsPort)
        let endpoint = try AMQPEndpoint(
            uri: "amqps://guest:guest@127.0.0.1:\(port)/?verify=verify_none&\(certificates.clientQuery)")
        let connection = try await AMQPConnection.connect(to: endpoint, logger: TestBroker.logger)
        #expect(connection.isOpen)
        await connection.close()
    }

    @Test func withoutAClientCertificateTheBrokerRefuses() async throws {
        let (broker, certificates) = try await TLSBroker.get()
        let port = try #require(broker.tlsPort)
        let endpoint = try AMQPEndpoint(
            uri: "amqps://guest:guest@localhost:\(port)/?cacertfile=\(certificates.caFile)&connection_timeout=5000")
        await expectRefused(endpoint)
    }

    @Test func aClientCertificateFromAnotherAuthorityIsRefused() async throws {
        let (broker, certificates) = try await TLSBroker.get()
        let port = try #require(broker.tlsPort)
        let endpoint = try AMQPEndpoint(
            uri: """
                amqps://guest:guest@localhost:\(port)/?cacertfile=\(certificates.caFile)&certfile=\(certificates.otherClientCertificate)\
                &keyfile=\(certificates.otherClientKey)&connection_timeout=5000
                """)
        await expectRefused(endpoint)
    }

    /// The broker ends the handshake (or the connection right after it): a TLS or connection error, never a hang and
    /// never a login.
    func expectRefused(_ endpoint: AMQPEndpoint) async {
        let clock = ContinuousClock()
        let started = clock.now
        do {
            let connection = try await AMQPConnection.connect(to: endpoint, logger: TestBroker.logger)
            await connection.close()
            Issue.record("the broker requires a client certificate from its CA")
        } catch let error as AMQPError {
            #expect(
                [.tlsFailed, .connectionFailed, .connectionLost, .connectionClosed].contains(error.code), "\(error)")
            #expect(!error.description.contains("guest:guest"))
        } catch {
            Issue.record("unexpected error \(error)")
        }
        #expect(clock.now - started < .seconds(7))
    }

    @Test func plaintextToTheTLSPortFailsClearly() async throws {
        let (broker, _) = try await TLSBroker.get()
        let port = try #require(broker.tlsPort)
        let endpoint = try AMQPEndpoint(uri: "amqp://guest:guest@127.0.0.1:\(port)/?connection_timeout=5000")
        let clock = ContinuousClock()
        let started = clock.now
        do {
            _ = try await AMQPConnection.connect(to: endpoint, logger: TestBroker.logger)
            Issue.record("plain AMQP cannot talk to a TLS listener")
        } catch let error as AMQPError {
            #expect(error.code == .connectionFailed)
            #expect(error.message.contains("\(port)"))
        }
        #expect(clock.now - started < .seconds(7))
    }
}

struct TestCertificates: Sendable {
    var directory: String
    var caFile: String { "\(directory)/ca.pem" }
    var otherCAFile: String { "\(directory)/other-ca.pem" }
    var serverCertificate: String { "\(directory)/server.pem" }
    var serverKey: String { "\(directory)/server.key" }
    var clientCertificate: String { "\(directory)/client.pem" }
    var clientKey: String { "\(directory)/client.key" }
    var otherClientCertificate: String { "\(directory)/other-client.pem" }
    var otherClientKey: String { "\(directory)/other-client.key" }
    /// The URI query parameters that present the client certificate.
    var clientQuery: String { "certfile=\(clientCertificate)&keyfile=\(clientKey)" }

    /// A CA, a server and a client certificate it signs (the server's for localhost / 127.0.0.1), and an unrelated
    /// second CA with a client certificate of its own, made with openssl.
    static func make() async throws -> TestCertificates {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "warren-tls-\(UUID().uuidString.prefix(8))"
        ).path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let certificates = TestCertificates(directory: directory)
        try "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
            .write(toFile: "\(directory)/server.ext", atomically: true, encoding: .utf8)
        try "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n".write(
            toFile: "\(directory)/client.ext", atomically: true, encoding: .utf8)
        let steps: [[String]] = [
            [
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
                "-subj", "/CN=Warren Test CA",
            ],
            [
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other-ca.key", "-out", "other-ca.pem",
                "-days", "2", "-subj", "/CN=Someone Else CA",
            ],
            [
                "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj",
                "/CN=localhost",
            ],
            [
                "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out",
                "server.pem", "-days", "2", "-extfile", "server.ext",
            ],
            [
                "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "client.key", "-out", "client.csr", "-subj",
                "/CN=warren-worker",
            ],
            [
                "x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out",
                "client.pem", "-days", "2", "-extfile", "client.ext",
            ],
            [
                "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "other-client.key", "-out", "other-client.csr",
                "-subj", "/CN=intruder",
            ],
            [
                "x509", "-req", "-in", "other-client.csr", "-CA", "other-ca.pem", "-CAkey", "other-ca.key",
                "-CAcreateserial", "-out", "other-client.pem", "-days", "2", "-extfile", "client.ext",
            ],
        ]
        for arguments in steps { try await runTool("/usr/bin/openssl", arguments, in: directory) }
        return certificates
    }
}

/// Runs a command to completion without blocking a thread of the cooperative pool.
func runTool(_ executable: String, _ arguments: [String], in directory: String) async throws {
    let run = try await runProcess(executable, arguments, in: URL(fileURLWithPath: directory))
    guard run.status == 0 else { throw TestFailure("\(executable) \(arguments.joined(separator: " ")): \(run)") }
}

enum TLSBroker {
    static let certificates = CertificatesOnce()

    static func get() async throws -> (LocalBroker, TestCertificates) {
        let certificates = try await certificates.get()
        let broker = try await bootingOneAtATime {
            try await LocalBroker.shared(
                "tls",
                configuration: LocalBrokerConfiguration(
                    tls: .init(
                        certificateFile: certificates.serverCertificate, keyFile: certificates.serverKey,
                        caCertificateFile: certificates.caFile,
                        verifyClients: true, requireClientCertificate: true)))
        }
        return (broker, certificates)
    }
}

final class CertificatesOnce: Sendable {
    private let task = Mutex<Task<TestCertificates, any Error>?>(nil)

    func get() async throws -> TestCertificates {
        let current = task.withLock { task in
            if let task { return task }
            let made = Task { try await TestCertificates.make() }
            task = made
            return made
        }
        return try await current.value
    }
}
