package cdcchaos;

import java.lang.instrument.Instrumentation;
import java.lang.management.ManagementFactory;
import java.lang.reflect.Field;
import java.lang.reflect.Method;
import java.net.URI;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * A Java agent for the stack's TaskManagers: while the JVM is idle after its start, it does the JVM-wide work
 * that a TaskManager taking over a job would otherwise do on the recovery's critical path, on two busy cores.
 *
 * <ul>
 *   <li>initialises the classes named in the agent's argument (the Kafka client's protocol tables: every
 *       consumer's first request waits for them, seconds on a cold JVM under load);</li>
 *   <li>opens the checkpoint store's file system once Flink has configured its file systems, so Flink's
 *       file-system cache holds it (the S3 client: Hadoop's and the AWS SDK's classes, 1.7 s in a cold
 *       takeover).</li>
 * </ul>
 * Nothing here touches a job: what is warmed is shared by every job on the JVM (the application class path
 * and the plugin's cached file system).  Failures are printed and ignored: warming changes speed, not behaviour.
 *
 * <p>Argument: a comma-separated list of class names and at most one file-system URI, e.g.
 * {@code s3://bucket/,a.B,c.D} (no {@code ;}: Flink reads that as a list separator in its JVM options).
 */
public final class TaskManagerWarmup {
    private TaskManagerWarmup() {}

    public static void premain(String args, Instrumentation inst) {
        Thread t = new Thread(() -> warm(args == null ? "" : args), "cdc-chaos-tm-warmup");
        t.setDaemon(true);
        t.setPriority(Thread.MIN_PRIORITY);
        t.start();
    }

    private static void warm(String args) {
        String uri = null;
        List<String> classes = new ArrayList<>();
        for (String item : args.split(",")) {
            if (item.contains("://")) {
                uri = item.trim();
            } else if (!item.isBlank()) {
                classes.add(item.trim());
            }
        }
        long quietAfter = waitUntilQuiet();
        System.err.printf("cdc-chaos-tm-warmup: the JVM was busy for %d ms, warming now%n", quietAfter);
        long start = System.nanoTime();
        ClassLoader loader = ClassLoader.getSystemClassLoader();
        int initialised = 0;
        for (String name : classes) {
            try {
                Class.forName(name, true, loader);
                initialised++;
            } catch (Throwable e) {
                System.err.println("cdc-chaos-tm-warmup: class " + name + " not warmed: " + e);
            }
        }
        System.err.printf("cdc-chaos-tm-warmup: %d/%d classes initialised in %d ms%n", initialised, classes.size(),
                (System.nanoTime() - start) / 1_000_000);
        if (uri != null) {
            long opening = System.nanoTime();
            boolean opened = openFileSystem(loader, uri);
            System.err.printf("cdc-chaos-tm-warmup: file system %s %s after %d ms%n", uri,
                    opened ? "opened" : "not opened", (System.nanoTime() - opening) / 1_000_000);
        }
    }

    /**
     * Waits (at most a minute) until the process has used under a quarter of the machine's CPUs for a second:
     * warming while the TaskManager starts delayed its registration by 3 s (two TaskManagers restarted together:
     * 8 s without the agent, 11 s with it), and a TaskManager that is busy at once (a job deployed on it right
     * away) does this work for its job anyway.  Returns the milliseconds waited.
     */
    private static long waitUntilQuiet() {
        long start = System.nanoTime();
        long deadline = start + 60_000_000_000L;
        java.lang.management.OperatingSystemMXBean bean = ManagementFactory.getOperatingSystemMXBean();
        int quiet = 0;
        while (System.nanoTime() < deadline && quiet < 2) {
            try {
                Thread.sleep(500);
            } catch (InterruptedException e) {
                break;
            }
            double load = bean instanceof com.sun.management.OperatingSystemMXBean
                    ? ((com.sun.management.OperatingSystemMXBean) bean).getProcessCpuLoad() : 0.0;
            quiet = load >= 0 && load < 0.25 ? quiet + 1 : 0;
        }
        return (System.nanoTime() - start) / 1_000_000;
    }

    /**
     * Flink's FileSystem.get(uri) once the TaskManager has initialised file systems with its plugins (asking
     * before that would make Flink initialise them without plugins; the TaskManager's own initialisation
     * would then replace them, but nothing would be warmed).
     */
    private static boolean openFileSystem(ClassLoader loader, String uri) {
        long deadline = System.nanoTime() + 180_000_000_000L;
        String scheme = URI.create(uri).getScheme();
        Throwable last = null;
        while (System.nanoTime() < deadline) {
            try {
                Class<?> fs = Class.forName("org.apache.flink.core.fs.FileSystem", true, loader);
                Field factories = fs.getDeclaredField("FS_FACTORIES");
                factories.setAccessible(true);
                if (!((Map<?, ?>) factories.get(null)).containsKey(scheme)) {
                    throw new IllegalStateException("no " + scheme + " file system yet");
                }
                Method get = fs.getMethod("get", URI.class);
                Object fileSystem = get.invoke(null, URI.create(uri));
                Class<?> path = Class.forName("org.apache.flink.core.fs.Path", true, loader);
                Object root = path.getConstructor(String.class).newInstance(uri);
                // through Flink's public FileSystem: the plugin's wrapper class is not public
                fs.getMethod("exists", path).invoke(fileSystem, root);
                return true;
            } catch (IllegalStateException | ClassNotFoundException e) {
                // before the TaskManager has loaded its plugins there is no s3 file system yet: wait
                last = e;
                try {
                    Thread.sleep(500);
                } catch (InterruptedException ie) {
                    return false;
                }
            } catch (Throwable e) {
                // the file system exists but does not answer (the store is down): warming changes nothing
                last = e instanceof java.lang.reflect.InvocationTargetException ? e.getCause() : e;
                break;
            }
        }
        System.err.println("cdc-chaos-tm-warmup: file system " + uri + " not opened: " + last);
        return false;
    }
}
