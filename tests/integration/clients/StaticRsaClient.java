// A JSSE client for one TLS 1.2 handshake with a static RSA key exchange, as older Java
// configurations make it. Usage: java StaticRsaClient.java HOST PORT CA_PEM SERVER_NAME
// Exits 0 once the handshake completes with TLS_RSA_WITH_AES_128_GCM_SHA256 and the server's
// chain verified against CA_PEM for SERVER_NAME; otherwise prints JSSE's reason and exits 1.
import java.io.FileInputStream;
import java.net.Socket;
import java.security.KeyStore;
import java.security.Security;
import java.security.cert.CertificateFactory;
import java.util.Arrays;
import java.util.List;
import java.util.stream.Collectors;
import javax.net.ssl.SNIHostName;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.TrustManagerFactory;

public class StaticRsaClient {
    static final String SUITE = "TLS_RSA_WITH_AES_128_GCM_SHA256";

    public static void main(String[] args) throws Exception {
        String host = args[0], caPem = args[2], serverName = args[3];
        int port = Integer.parseInt(args[1]);
        // Newer JDKs disable TLS_RSA_* by default; the clients this check stands for do not.
        String disabled = Security.getProperty("jdk.tls.disabledAlgorithms");
        Security.setProperty(
                "jdk.tls.disabledAlgorithms",
                Arrays.stream(disabled.split(","))
                        .map(String::trim)
                        .filter(a -> !a.startsWith("TLS_RSA_"))
                        .collect(Collectors.joining(", ")));

        KeyStore trust = KeyStore.getInstance(KeyStore.getDefaultType());
        trust.load(null, null);
        try (FileInputStream in = new FileInputStream(caPem)) {
            int i = 0;
            for (var cert : CertificateFactory.getInstance("X.509").generateCertificates(in)) {
                trust.setCertificateEntry("root" + i++, cert);
            }
        }
        TrustManagerFactory tmf =
                TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(trust);
        SSLContext context = SSLContext.getInstance("TLSv1.2");
        context.init(null, tmf.getTrustManagers(), null);

        try (Socket plain = new Socket(host, port);
                SSLSocket socket =
                        (SSLSocket) context.getSocketFactory()
                                .createSocket(plain, serverName, port, true)) {
            SSLParameters parameters = socket.getSSLParameters();
            parameters.setProtocols(new String[] {"TLSv1.2"});
            parameters.setCipherSuites(new String[] {SUITE});
            parameters.setServerNames(List.of(new SNIHostName(serverName)));
            parameters.setEndpointIdentificationAlgorithm("HTTPS");
            socket.setSSLParameters(parameters);
            socket.startHandshake();
            String suite = socket.getSession().getCipherSuite();
            System.out.println("handshake completed: " + socket.getSession().getProtocol() + " " + suite);
            System.exit(SUITE.equals(suite) ? 0 : 1);
        } catch (javax.net.ssl.SSLException error) {
            Throwable cause = error;
            while (cause.getCause() != null) {
                cause = cause.getCause();
            }
            System.out.println("handshake failed: " + error + " (cause: " + cause + ")");
            System.exit(1);
        }
    }
}
