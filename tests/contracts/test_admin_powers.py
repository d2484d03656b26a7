"""What the deployer's admin powers can and cannot do.

- The registry's admin grants SLASHER_ROLE to the task managers at deployment, then freezes roles: afterwards it can
  neither make itself a slasher (and take any stake) nor revoke a manager's role (stranding its locks).
- The TaskManager's owner can pause new tasks only: running rounds keep taking submissions, so a pause never lets
  their clocks run out empty.
"""

from __future__ import annotations

import ape

from conftest import MIN_CONTRIBUTOR, create_task, digest, events
from test_task_manager import OPEN


def test_before_freezing_the_admin_could_make_itself_a_slasher_and_take_a_stake(registry, admin, alice, staked):
    registry.grantRole(registry.SLASHER_ROLE(), admin, sender=admin)  # the attack the freeze closes
    registry.slash(alice, MIN_CONTRIBUTOR, b"\x00" * 32, sender=admin)
    assert registry.activeStake(alice) == MIN_CONTRIBUTOR  # alice staked twice the minimum


def test_frozen_roles_cannot_be_granted_or_revoked(registry, manager, admin, alice, staked):
    assert not registry.rolesFrozen()
    tx = registry.freezeRoles(sender=admin)
    assert events(tx, registry.RolesFrozen)[0].by == admin.address and registry.rolesFrozen()
    slasher = registry.SLASHER_ROLE()
    with ape.reverts(registry.StakeRegistryRolesFrozen):
        registry.grantRole(slasher, admin, sender=admin)
    with ape.reverts(registry.StakeRegistryRolesFrozen):
        registry.grantRole(registry.DEFAULT_ADMIN_ROLE(), alice, sender=admin)
    with ape.reverts(registry.StakeRegistryRolesFrozen):
        registry.revokeRole(slasher, manager, sender=admin)
    with ape.reverts(registry.StakeRegistryUnauthorizedSlasher, caller=admin.address):
        registry.slash(alice, MIN_CONTRIBUTOR, b"\x00" * 32, sender=admin)
    assert registry.hasRole(slasher, manager) and registry.activeStake(alice) == 2 * MIN_CONTRIBUTOR
    with ape.reverts(registry.StakeRegistryRolesFrozen):
        registry.freezeRoles(sender=admin)


def test_only_the_admin_freezes_and_it_may_still_renounce(registry, admin, outsider):
    with ape.reverts(registry.AccessControlUnauthorizedAccount):
        registry.freezeRoles(sender=outsider)
    registry.freezeRoles(sender=admin)
    admin_role = registry.DEFAULT_ADMIN_ROLE()
    registry.renounceRole(admin_role, admin, sender=admin)  # giving up power stays possible
    assert not registry.hasRole(admin_role, admin)
    with ape.reverts(registry.AccessControlUnauthorizedAccount):
        registry.setMinStakes(1, 1, sender=admin)


def test_a_pause_leaves_running_rounds_alone(manager, fed, owner, validator, admin, alice, bob, staked):
    task_id, _ = create_task(manager, fed, owner, validator)
    manager.pause(sender=admin)
    for i, who in enumerate((alice, bob)):
        manager.submitUpdate(task_id, 0, digest(40 + i), 1, sender=who)
    assert manager.getRound(task_id, 0).submissions == 2 and manager.getRound(task_id, 0).phase == OPEN
    with ape.reverts(manager.EnforcedPause):
        create_task(manager, fed, owner, validator)
