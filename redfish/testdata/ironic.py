"""Drives a Redfish service with sushy the way Ironic's redfish driver does.

Usage: ironic.py URL USER PASSWORD AUTH IMAGE
AUTH is auto (Ironic's default, session with basic as fallback), session or
basic. Prints one JSON object with what it saw; exits non-zero on error.
"""
import json
import sys

import sushy
from sushy import auth

url, user, password, mode, image = sys.argv[1:6]
kinds = {'auto': auth.SessionOrBasicAuth, 'session': auth.SessionAuth, 'basic': auth.BasicAuth}
conn = sushy.Sushy(url, auth=kinds[mode](username=user, password=password), verify=False)
seen = {'redfish_version': conn.redfish_version, 'uuid': conn.uuid}

# Ironic addresses the system by the path in driver_info redfish_system_id.
system = conn.get_system('/redfish/v1/Systems/node1')
seen['only_system'] = conn.get_system().identity
seen['power'] = [str(system.power_state.value)]
seen['system_uuid'] = system.uuid

# Power: off, on, reboot the ways Ironic's power interface does.
for reset in (sushy.RESET_FORCE_OFF, sushy.RESET_ON, sushy.RESET_FORCE_RESTART,
              sushy.RESET_GRACEFUL_RESTART, sushy.RESET_GRACEFUL_SHUTDOWN, sushy.RESET_ON):
    system.reset_system(reset)
    system.refresh()
    seen['power'].append(str(system.power_state.value))

# Deploy through virtual media: the CD of the system's manager.
cd = None
for manager in system.managers:
    seen['firmware'] = manager.firmware_version
    for media in manager.virtual_media.get_members():
        if sushy.VIRTUAL_MEDIA_CD in media.media_types:
            cd = media
cd.insert_media(image, inserted=True, write_protected=True)
cd.refresh()
seen['media'] = {'image': cd.image, 'inserted': cd.inserted}
system.set_system_boot_options(sushy.BOOT_SOURCE_TARGET_CD,
                               enabled=sushy.BOOT_SOURCE_ENABLED_ONCE,
                               mode=sushy.BOOT_SOURCE_MODE_UEFI)
system.refresh()
seen['boot'] = [str(system.boot.target.value), str(system.boot.enabled.value), str(system.boot.mode.value)]
system.reset_system(sushy.RESET_FORCE_RESTART)
cd.eject_media()
cd.refresh()
seen['media_after_eject'] = cd.inserted
system.set_system_boot_options(sushy.BOOT_SOURCE_TARGET_PXE,
                               enabled=sushy.BOOT_SOURCE_ENABLED_CONTINUOUS,
                               mode=sushy.BOOT_SOURCE_MODE_BIOS)
system.refresh()
seen['boot2'] = [str(system.boot.target.value), str(system.boot.enabled.value), str(system.boot.mode.value)]

# Inspection: what Ironic's redfish inspect interface reads.
seen['memory_gib'] = system.memory_summary.size_gib
seen['cpus'] = system.processors.summary.count
seen['arch'] = str(system.processors.summary.architecture.value)
seen['macs'] = sorted(system.ethernet_interfaces.summary)

# Refusals come back as sushy's HTTP errors with the service's message.
try:
    system.reset_system('Explode')
except sushy.exceptions.InvalidParameterValueError as e:
    seen['bad_reset'] = 'InvalidParameterValueError'
try:
    cd.insert_media('file:///etc/shadow')
except sushy.exceptions.BadRequestError as e:
    seen['file_url'] = e.status_code
print(json.dumps(seen))
# Letting go of the connection logs the session out.
del system, cd, manager, media, conn
