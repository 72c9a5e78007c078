"""Meet software in and out: LiftingCast's live feed into ``meet.state`` (:mod:`.liftingcast`), and
OpenLifter's ``.openlifter`` files as roster in and official results out (:mod:`.openlifter`)."""
