#!/bin/sh
# Entry point of the flatmon image: the same JVM settings as bin/flatmon, the CLI's arguments as given.
# -Xmn256m and FLATMON_PHYSICAL=0: see bin/flatmon (eden pages stay hot; no RSS read per native allocation).
exec java -Xmn256m ${JAVA_OPTS:--Xmx2g} \
  -Dorg.bytedeco.javacpp.maxbytes="${FLATMON_OFFHEAP:-4G}" \
  -Dorg.bytedeco.javacpp.maxphysicalbytes="${FLATMON_PHYSICAL:-0}" \
  -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
  -Dorg.slf4j.simpleLogger.log.io.flatmon=info \
  -Dorg.slf4j.simpleLogger.showThreadName=false \
  -XX:+UseParallelGC \
  -cp "/opt/flatmon/flatmon.jar:/opt/flatmon/lib/*" io.flatmon.cli.FlatmonCommand "$@"
